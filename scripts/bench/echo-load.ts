import { performance } from 'node:perf_hooks';
import * as zmq from 'zeromq';
import { ClientCommand, ECHO_SERVICE, MDPC01, MDPC02 } from '../../shared/protocol.ts';
import { percentile } from './percentile.ts';

export interface EchoLoadOptions {
  /** A broker frontend (`mdp`) or a ROUTER echo server (`direct`). */
  endpoint: string;
  /** Payload bytes per request. @defaultValue 64 */
  payloadBytes?: number;
  /**
   * Client protocol: MDP/0.2 (Zerve's own) or MDP/0.1, the only one the Guide's C broker speaks, so
   * the same frames can be sent to both brokers. @defaultValue 2
   */
  version?: 1 | 2;
}

export interface PipelinedResult {
  window: number;
  completed: number;
  /** Every reply, the warm-up's and the drain's after the window included. */
  received: number;
  /** Replies that were not a FINAL echo of the request (error replies, PARTIALs). */
  unexpected: number;
  perSecond: number;
  durationMs: number;
}

export interface RoundTripResult {
  count: number;
  p50Us: number;
  p99Us: number;
  perSecond: number;
}

/**
 * A bare ZeroMQ DEALER speaking MDP as a client (REQUEST frames in, FINAL frames back), with no client
 * library in between. Against the direct echo server it sends the very same frames, which come back
 * unchanged, so both sides move the same bytes. Every reply is checked to hold the request's payload:
 * an error answered quickly never counts as a fast echo.
 */
export class EchoLoad {
  private readonly socket: zmq.Dealer;
  private readonly request: Buffer[];
  private readonly replies: AsyncIterator<Buffer[]>;
  private readonly version: 1 | 2;

  constructor(private readonly options: EchoLoadOptions) {
    // A lost reply (the Guide's broker sends to a dead worker until its heartbeat expires) fails the run instead of hanging it.
    this.socket = new zmq.Dealer({ linger: 0, sendHighWaterMark: 100_000, receiveHighWaterMark: 100_000, receiveTimeout: 10_000 });
    this.socket.connect(options.endpoint);
    this.version = options.version ?? 2;
    const payload = Buffer.alloc(options.payloadBytes ?? 64, 0x61);
    this.request =
      this.version === 1
        ? [Buffer.alloc(0), MDPC01, Buffer.from(ECHO_SERVICE), payload]
        : [MDPC02, Buffer.from([ClientCommand.REQUEST]), Buffer.from(ECHO_SERVICE), payload];
    this.replies = this.socket[Symbol.asyncIterator]();
  }

  /** Requests with up to `window` in flight: replies per second over `durationMs` after `warmUpMs`. */
  async pipelined(window: number, warmUpMs: number, durationMs: number): Promise<PipelinedResult> {
    const started = performance.now();
    const measureFrom = started + warmUpMs;
    const measureUntil = measureFrom + durationMs;
    let inFlight = 0;
    let completed = 0;
    let received = 0;
    let unexpected = 0;
    let stop = false;
    let wake: (() => void) | undefined;
    const sender = (async () => {
      while (!stop) {
        if (inFlight >= window) {
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        inFlight++;
        await this.socket.send(this.request);
      }
    })();
    while (inFlight > 0 || !stop) {
      const { value: reply } = await this.replies.next();
      inFlight--;
      received++;
      const now = performance.now();
      if (!this.isEcho(reply as Buffer[])) unexpected++;
      else if (now > measureFrom && now <= measureUntil) completed++;
      if (now > measureUntil) stop = true;
      const w = wake;
      wake = undefined;
      w?.();
    }
    await sender;
    return { window, completed, received, unexpected, perSecond: (completed * 1000) / durationMs, durationMs };
  }

  /** One request at a time: round-trip percentiles over `count` requests after `warmUp` unmeasured ones. */
  async roundTrips(count: number, warmUp: number): Promise<RoundTripResult> {
    const times: number[] = [];
    const started = performance.now();
    for (let i = 0; i < warmUp + count; i++) {
      const t0 = performance.now();
      await this.socket.send(this.request);
      const { value: reply } = await this.replies.next();
      if (!this.isEcho(reply as Buffer[])) throw new Error(`unexpected echo reply: ${(reply as Buffer[]).map(String).join(' | ')}`);
      if (i >= warmUp) times.push((performance.now() - t0) * 1000);
    }
    const elapsedMs = performance.now() - started;
    times.sort((a, b) => a - b);
    return { count, p50Us: percentile(times, 0.5), p99Us: percentile(times, 0.99), perSecond: ((warmUp + count) * 1000) / elapsedMs };
  }

  /**
   * Asks the broker's `mmi.service` (RFC 8, answered by Zerve and the Guide's C broker alike) whether
   * `echo` has a worker, until it says 200 or `timeoutMs` passes (then the socket is not to be reused).
   */
  async waitForEchoWorker(timeoutMs = 30_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    const ask = this.version === 1 ? [Buffer.alloc(0), MDPC01] : [MDPC02, Buffer.from([ClientCommand.REQUEST])];
    while (performance.now() < deadline) {
      await this.socket.send([...ask, Buffer.from('mmi.service'), Buffer.from(ECHO_SERVICE)]);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const reply = await Promise.race([this.replies.next(), new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), deadline - performance.now())))]);
      clearTimeout(timer);
      if (!reply) break;
      if (String((reply.value as Buffer[]).at(-1)) === '200') return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no echo worker at ${this.options.endpoint} within ${timeoutMs} ms`);
  }

  close(): void {
    this.socket.close();
  }

  /** A FINAL (or, from the direct server, the REQUEST itself) carrying our payload back. */
  private isEcho(reply: Buffer[]): boolean {
    if (this.version === 1) {
      return reply.length === 4 && reply[0]!.length === 0 && reply[1]!.equals(MDPC01) && reply[3]!.equals(this.request[3]!);
    }
    if (reply.length !== 4 || !reply[0]!.equals(MDPC02)) return false;
    const command = reply[1]![0];
    if (command !== ClientCommand.FINAL && command !== ClientCommand.REQUEST) return false;
    return reply[3]!.equals(this.request[3]!);
  }
}
