import { performance } from 'node:perf_hooks';
import type { Logger } from '../shared/logger.ts';

/** One refused peer: what is known of it and why it was refused. */
export interface Refusal {
  /** `workers` or `clients`: the broker socket it tried. */
  socket: string;
  reason: string;
  /** What ZeroMQ said, logged but not part of what makes a peer "the same" (it varies per attempt). */
  detail?: string;
  /** CURVE public key (Z85), when the handshake got that far. */
  publicKey?: string;
  /** Peer IP address (from ZAP), or the broker endpoint (from a failed handshake, whose peer ZeroMQ does not name). */
  address?: string;
}

/**
 * Logs refused peers once per peer (key + address + reason) per `repeatMs`, and at most `perSecond`
 * lines a second overall, counting what it left out: a peer retrying in a loop, or a flood of
 * strangers, cannot flood the log.
 */
export class RefusalLog {
  private readonly lastLogged = new Map<string, number>();
  private windowStart = 0;
  private windowCount = 0;
  private suppressed = 0;

  constructor(
    private readonly log: Logger,
    private readonly repeatMs = 60_000,
    private readonly perSecond = 10,
    /** The clock, in ms; tests pass their own. */
    private readonly now: () => number = () => performance.now(),
  ) {}

  refused(refusal: Refusal): void {
    const now = this.now();
    const peer = `${refusal.socket}|${refusal.publicKey ?? ''}|${refusal.address ?? ''}|${refusal.reason}`;
    const last = this.lastLogged.get(peer);
    if (last !== undefined && now - last < this.repeatMs) return;
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.windowCount = 0;
    }
    if (this.windowCount >= this.perSecond) {
      this.suppressed++;
      return;
    }
    this.windowCount++;
    if (this.lastLogged.size >= 10_000) this.lastLogged.clear(); // bounded; at worst a peer is logged again
    this.lastLogged.set(peer, now);
    const suppressed = this.suppressed;
    this.suppressed = 0;
    this.log.warn({ ...refusal, ...(suppressed > 0 ? { suppressed } : {}) }, 'peer refused');
  }
}
