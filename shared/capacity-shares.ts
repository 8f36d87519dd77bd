/**
 * How a worker shares its capacity out among the brokers it is registered on (docs/brokers.md,
 * "Sharing a worker's capacity"). Each broker gets a grant, the capacity the worker announces to it
 * in READY; the broker never has more than its grant in flight at the worker. Grants follow demand:
 * a broker that fills its grant takes one unit from a broker that has left part of its own unused
 * for a while.
 */

/** One broker's part of a worker's capacity, as the sharing sees it. */
export interface CapacityShare {
  /** Not known to be gone (see BrokerLink.up). */
  up: boolean;
  /** Requests this broker may have in flight at the worker. */
  grant: number;
  /** Requests this broker has in flight at the worker now. */
  inFlight: number;
  /** When it last had its whole grant in flight (or got a new grant). */
  lastFullAt: number;
}

/**
 * The grants of an even split of `capacity` over the shares that are up (the remainder to the first
 * ones), at least 1 each so that every broker can reach the worker; a share that is down gets 1, so
 * the worker registers with some capacity the moment its broker returns. With none up, the split is
 * over all of them.
 *
 * With fewer capacity than brokers up, the grants add up to more than the capacity: the worker then
 * runs at most `capacity` at once and the rest waits at the worker (see docs/brokers.md).
 */
export function splitCapacity(capacity: number, shares: readonly CapacityShare[]): number[] {
  // None up (all brokers gone, or just one broker that went silent): split as if all were, so a
  // broker that returns gets its whole share back at once.
  const counted = shares.some((s) => s.up) ? (s: CapacityShare) => s.up : () => true;
  const up = shares.filter(counted).length;
  let rank = 0;
  return shares.map((share) => {
    if (!counted(share)) return 1;
    const grant = Math.floor(capacity / up) + (rank < capacity % up ? 1 : 0);
    rank++;
    return Math.max(1, grant);
  });
}

/**
 * The share that gives one unit of its grant to `hungry` (which has its whole grant in flight), or
 * undefined: one that is up, keeps at least 1 after giving, and has had part of its grant unused for
 * at least `idleMs` (so credit does not swing back and forth between two busy brokers).
 */
export function creditDonor<T extends CapacityShare>(shares: readonly T[], hungry: T, now: number, idleMs: number): T | undefined {
  if (!hungry.up || hungry.inFlight < hungry.grant) return undefined;
  let best: T | undefined;
  for (const share of shares) {
    if (share === hungry || !share.up || share.grant <= 1 || share.inFlight >= share.grant) continue;
    if (now - share.lastFullAt < idleMs) continue;
    if (!best || share.grant - share.inFlight > best.grant - best.inFlight) best = share;
  }
  return best;
}
