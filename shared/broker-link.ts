import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import * as zmq from 'zeromq';
import { ZerveError } from './errors.ts';
import type { Logger } from './logger.ts';
import type { WorkerCurve } from './curve-socket-options.ts';
import { MDPW02, ProtocolError, WorkerCommand, parseBrokerMessage } from './protocol.ts';
import { SendQueue } from './send-queue.ts';
import { watchSocketEvents } from './socket-events.ts';

const HEARTBEAT = [MDPW02, Buffer.from([WorkerCommand.HEARTBEAT])];
const DISCONNECT = [MDPW02, Buffer.from([WorkerCommand.DISCONNECT])];

/** What a {@link BrokerLink} tells the worker connection that owns it. */
export interface BrokerLinkOwner {
  /** A request arrived on this link (from the connection whose send queue is `sends`). */
  onRequest(link: BrokerLink, client: Buffer, body: Buffer[], sends: SendQueue): void;
  /** The broker was heard from after a (re)connection: it counts again when capacity is shared out. */
  onLive(link: BrokerLink): void;
  /** The broker went silent or said DISCONNECT: its share goes to the others. */
  onLost(link: BrokerLink, reason: string): void;
  /** The broker's ZAP handler refused this process's CURVE key. */
  onRefused(link: BrokerLink, error: ZerveError): void;
  /** READY for this link now, or undefined while the worker has no services. */
  ready(link: BrokerLink): Buffer[] | undefined;
}

export interface BrokerLinkOptions {
  heartbeatIntervalMs: number;
  heartbeatLiveness: number;
  reconnectDelayMs: number;
}

/**
 * A worker's connection to one broker: one DEALER socket, a routing id of its own per connection,
 * heartbeats, and reconnection when the broker goes silent or says DISCONNECT. The worker connection
 * owns one per broker in its list and decides what each may take (its `grant`).
 */
export class BrokerLink {
  /** Requests this broker may have in flight here at once (the capacity sent in its READY). */
  grant = 1;
  /** Requests of the current connection not yet answered. */
  inFlight = 0;
  /** When this link last had as many requests in flight as its grant (or got its grant). */
  lastFullAt = 0;
  /**
   * Not known to be gone: true from the start (a broker is presumed there until it stays silent for a
   * liveness period), false after it went silent or said DISCONNECT, true again once it is heard from.
   */
  up = true;
  /** Counts connections: a reply for an earlier one goes nowhere. */
  generation = 0;
  /** This connection's routing id: chosen here, so the READY key proof can bind to it. */
  routingId = '';
  /** Set while the broker refuses this connection's CURVE key; cleared by the next handshake that succeeds. */
  refusal?: ZerveError;
  sends?: SendQueue;
  lastSend = 0;
  private socket?: zmq.Dealer;
  private brokerExpiry = 0;
  private closed = false;

  constructor(
    readonly endpoint: string,
    readonly curve: WorkerCurve | undefined,
    private readonly options: BrokerLinkOptions,
    private readonly owner: BrokerLinkOwner,
    readonly log: Logger,
  ) {}

  /** Opens a connection and sends READY (when the worker has services). */
  connect(): void {
    const generation = ++this.generation;
    // A fresh routing id per connection: a broker that revoked the last one's key ignores it for good.
    this.routingId = `w${randomBytes(12).toString('hex')}`;
    const socket = new zmq.Dealer({
      linger: 0,
      sendHighWaterMark: 100_000,
      receiveHighWaterMark: 100_000,
      routingId: this.routingId,
      ...this.curve?.socketOptions,
    });
    if (this.curve) this.watchHandshakes(socket, generation);
    socket.connect(this.endpoint);
    this.socket = socket;
    this.sends = new SendQueue(socket, this.log);
    this.inFlight = 0;
    this.brokerExpiry = performance.now() + this.livenessMs();
    this.sendReady();
    void this.receive(socket, generation);
  }

  /** Sends READY as the owner describes it now. */
  sendReady(): void {
    if (!this.sends) return; // between connections: connect() sends it
    const ready = this.owner.ready(this);
    if (ready) this.send(ready);
  }

  send(message: Buffer[]): void {
    if (this.sends?.push(message, true)) this.lastSend = performance.now();
  }

  livenessMs(): number {
    return this.options.heartbeatIntervalMs * this.options.heartbeatLiveness;
  }

  /** Gives the broker one more liveness period (after a pause of this process's own). */
  extendExpiry(now: number): void {
    this.brokerExpiry = Math.max(this.brokerExpiry, now + this.livenessMs());
  }

  /**
   * The heartbeat timer's work for this link: reconnects after a silent broker; otherwise sends
   * `metrics` when given, else a HEARTBEAT when nothing else went out for an interval.
   */
  tick(now: number, registered: boolean, metrics?: () => Buffer[]): void {
    if (!this.socket) return;
    // Not registered (no services yet): the broker answers a HEARTBEAT from an unknown worker with
    // DISCONNECT and sends none itself, so neither side's heartbeat means anything until READY.
    if (!registered) {
      this.brokerExpiry = now + this.livenessMs();
      return;
    }
    if (now > this.brokerExpiry) return this.reconnect('broker silent for the liveness period');
    // Sent even while replies flow (they stand in for heartbeats then), so a busy worker reports too.
    if (metrics) return this.send(metrics());
    if (now - this.lastSend >= this.options.heartbeatIntervalMs * 0.9) this.send(HEARTBEAT);
  }

  /** Flushes what is queued and says DISCONNECT, waiting at most a liveness period (a gone broker takes nothing). */
  async disconnect(): Promise<void> {
    if (!this.socket || !this.sends) return;
    const socket = this.socket;
    const waitMs = this.refusal ? 0 : this.livenessMs();
    const flushed = await Promise.race([this.sends.flush().then(() => true), sleep(waitMs, false, { ref: false })]);
    this.sends.close();
    if (flushed) {
      // One last direct send; the socket is idle, so no other send can be pending.
      await Promise.race([socket.send(DISCONNECT).catch(() => undefined), sleep(waitMs, undefined, { ref: false })]);
    }
  }

  /** Closes the socket for good; idempotent. */
  close(): void {
    this.closed = true;
    this.teardown();
  }

  private teardown(): void {
    this.sends?.close();
    this.socket?.close();
    this.socket = undefined;
    this.sends = undefined;
  }

  private reconnect(reason: string): void {
    if (this.closed) return;
    this.log.warn({ reason }, 'reconnecting to broker');
    this.up = false;
    this.teardown();
    this.owner.onLost(this, reason);
    setTimeout(() => {
      if (!this.closed) this.connect();
    }, this.options.reconnectDelayMs).unref();
  }

  /** Notes the broker refusing this key (see `refusal`), which would otherwise look like a broker that never answers. */
  private watchHandshakes(socket: zmq.Dealer, generation: number): void {
    watchSocketEvents(
      socket,
      (event) => {
        if (generation !== this.generation) return;
        if (event.type === 'handshake') {
          this.refusal = undefined;
        } else if (event.type === 'handshake:error:auth' && !this.refusal) {
          const key = this.curve!.keyPair.publicKey;
          this.refusal = new ZerveError(
            'NOT_ADMITTED',
            `the broker at ${this.endpoint} refused this process's CURVE key ${key} (ZAP status ${event.error.status}): ` +
              "it is not in the broker's --authorized-workers; add this key's .pub there",
            { details: { publicKey: key, endpoint: this.endpoint } },
          );
          this.log.error({ publicKey: key }, 'the broker refused this key (not in its --authorized-workers); retrying');
          this.owner.onRefused(this, this.refusal);
        }
      },
      this.log,
    );
  }

  private async receive(socket: zmq.Dealer, generation: number): Promise<void> {
    try {
      for await (const frames of socket) {
        if (generation !== this.generation) return;
        this.brokerExpiry = performance.now() + this.livenessMs();
        if (!this.up) {
          this.up = true;
          this.owner.onLive(this);
        }
        let message;
        try {
          message = parseBrokerMessage(frames);
        } catch (err) {
          if (err instanceof ProtocolError) {
            this.log.warn({ reason: err.message }, 'malformed message from broker dropped');
            continue;
          }
          throw err;
        }
        if (message.kind === 'disconnect') return this.reconnect('broker sent DISCONNECT');
        if (message.kind === 'request') this.owner.onRequest(this, message.client, message.body, this.sends!);
      }
    } catch (err) {
      if (!socket.closed) this.log.error({ err }, 'worker receive loop failed');
    }
  }
}
