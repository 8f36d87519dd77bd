import * as zmq from 'zeromq';
import type { Logger } from '../shared/logger.ts';
import { z85Encode } from '../shared/z85.ts';
import type { RefusalLog } from './refusal-log.ts';

/** The endpoint libzmq sends ZAP requests to, in the context of the socket doing the handshake (RFC 27). */
export const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';
const ZAP_VERSION = Buffer.from('1.0');

/** Decides one ZAP domain: whether a CURVE public key (Z85) is admitted. */
export type KeyPolicy = (publicKey: string) => boolean;

/**
 * ZeroMQ's authentication handler (ZAP, RFC 27) for the broker's context: every CURVE handshake on
 * a broker socket asks it, before any message of that peer exists. Domains name the sockets
 * (`zapDomain`); each has a key policy. A refused peer's handshake fails, so it never reaches MDP.
 */
export class ZapHandler {
  private readonly socket: zmq.Router;
  private loop?: Promise<void>;
  private closed = false;

  constructor(
    context: zmq.Context,
    private readonly policies: Map<string, KeyPolicy>,
    private readonly refusals: RefusalLog,
    private readonly log: Logger,
  ) {
    this.socket = new zmq.Router({ context, linger: 0 });
  }

  async start(): Promise<void> {
    await this.socket.bind(ZAP_ENDPOINT);
    this.loop = this.serve();
  }

  /** Stops answering; idempotent. Handshakes after this fail (no handler). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
    await this.loop;
  }

  private async serve(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        // [routing id, empty, version, request id, domain, address, identity, mechanism, credentials...]
        const [routing, , version, requestId, domain, address, , mechanism, key] = frames;
        if (!routing || !requestId || !version?.equals(ZAP_VERSION)) continue; // libzmq never sends this
        const { status, text } = this.decide(domain?.toString() ?? '', address?.toString() ?? '', mechanism?.toString() ?? '', key);
        await this.socket.send([routing, Buffer.alloc(0), ZAP_VERSION, requestId, Buffer.from(status), Buffer.from(text), Buffer.alloc(0), Buffer.alloc(0)]);
      }
    } catch (err) {
      if (!this.closed) this.log.error({ err }, 'ZAP handler failed; CURVE handshakes will fail');
    }
  }

  private decide(domain: string, address: string, mechanism: string, key: Buffer | undefined): { status: string; text: string } {
    const policy = this.policies.get(domain);
    if (mechanism !== 'CURVE' || !key || key.length !== 32 || !policy) {
      this.refusals.refused({ socket: domain, reason: `unexpected ${mechanism} handshake`, address });
      return { status: '400', text: 'not admitted' };
    }
    const publicKey = z85Encode(key);
    if (policy(publicKey)) return { status: '200', text: 'OK' };
    this.refusals.refused({ socket: domain, reason: 'public key not in the allowlist', publicKey, address });
    return { status: '400', text: 'key not admitted' };
  }
}
