import { performance } from 'node:perf_hooks';
import { ZerveError } from '../shared/errors.ts';

/**
 * When `zerve up --autoscale MIN:MAX` grows or shrinks a worker kind. The defaults suit one host:
 * a worker process starts in seconds (not minutes, as a cloud node does), so growing may follow a
 * burst within seconds, while shrinking waits a couple of minutes, since a process started again costs
 * a model load and the next burst often follows the last.
 */
export interface AutoscalePolicyOptions {
  /** Fewest worker processes. @defaultValue 1 */
  min: number;
  /** Most worker processes. @defaultValue 4 */
  max: number;
  /** Wanted (in flight + queued) per unit of worker capacity, as Ray Serve's `target_ongoing_requests`. @defaultValue 2 */
  targetPerCapacity: number;
  /** The load must stay above the target this long before workers are added. @defaultValue 5000 */
  upscaleDelayMs: number;
  /** The load must stay below the target this long before a worker is drained. @defaultValue 120_000 */
  downscaleDelayMs: number;
  /** The load is the median of the samples over this past span, so one spike scales nothing. @defaultValue 10_000 */
  lookBackMs: number;
  /**
   * Band around the target where nothing changes (a fraction of it). Shrinking goes only as far as
   * keeps the load below target × (1 − tolerance), and growing needs target × (1 + tolerance): a load
   * near the target leaves the count alone. @defaultValue 0.1
   */
  tolerance: number;
}

export const DEFAULT_AUTOSCALE_POLICY_OPTIONS: AutoscalePolicyOptions = {
  min: 1,
  max: 4,
  targetPerCapacity: 2,
  upscaleDelayMs: 5000,
  downscaleDelayMs: 120_000,
  lookBackMs: 10_000,
  tolerance: 0.1,
};

export interface ScaleDecision {
  direction: 'up' | 'down';
  from: number;
  to: number;
  reason: string;
}

interface Sample {
  at: number;
  load: number;
  capacityPerWorker: number;
}

/**
 * The autoscaling policy, pure: it is fed load samples and asked for a decision, and reads time only
 * from the injected clock, so tests drive it without sleeping.
 * @example
 * const policy = new AutoscalePolicy({ min: 1, max: 4 });
 * policy.observe(inFlight + queued, 2);
 * const decision = policy.decide(workers); // { direction: 'up', from: 1, to: 3, reason: '...' } or undefined
 */
export class AutoscalePolicy {
  readonly options: AutoscalePolicyOptions;
  private samples: Sample[] = [];
  private aboveSince: number | undefined;
  private belowSince: number | undefined;

  constructor(options: Partial<AutoscalePolicyOptions> = {}, private readonly now: () => number = () => performance.now()) {
    this.options = { ...DEFAULT_AUTOSCALE_POLICY_OPTIONS, ...options };
    const o = this.options;
    if (!(Number.isInteger(o.min) && o.min >= 1)) throw new ZerveError('BAD_CONFIG', `the fewest workers must be a whole number of at least 1, got ${o.min}`);
    if (!(Number.isInteger(o.max) && o.max >= o.min)) throw new ZerveError('BAD_CONFIG', `the most workers must be a whole number of at least ${o.min}, got ${o.max}`);
    for (const key of ['targetPerCapacity', 'lookBackMs'] as const) {
      if (!(o[key] > 0)) throw new ZerveError('BAD_CONFIG', `${key} must be positive, got ${o[key]}`);
    }
    for (const key of ['upscaleDelayMs', 'downscaleDelayMs'] as const) {
      if (!(o[key] >= 0)) throw new ZerveError('BAD_CONFIG', `${key} must be zero or more, got ${o[key]}`);
    }
    if (!(o.tolerance >= 0 && o.tolerance < 1)) throw new ZerveError('BAD_CONFIG', `tolerance must be at least 0 and below 1, got ${o.tolerance}`);
  }

  /** Records the load now: requests in flight plus queued for the kind, and the capacity of one worker. */
  observe(load: number, capacityPerWorker: number): void {
    if (!(load >= 0 && capacityPerWorker > 0)) return;
    const at = this.now();
    this.samples.push({ at, load, capacityPerWorker });
    while (this.samples.length > 1 && this.samples[0]!.at < at - this.options.lookBackMs) this.samples.shift();
  }

  /** The load over the look-back window per unit of capacity of `workers` workers. */
  loadPerCapacity(workers: number): number {
    const sampled = this.windowLoad();
    return sampled === undefined || workers <= 0 ? 0 : sampled.load / (workers * sampled.capacityPerWorker);
  }

  /** What to do with `current` workers now, or undefined to stay. */
  decide(current: number): ScaleDecision | undefined {
    const sampled = this.windowLoad();
    if (sampled === undefined) return undefined;
    const o = this.options;
    const now = this.now();
    const perWorkerTarget = o.targetPerCapacity * sampled.capacityPerWorker;
    const perCapacity = sampled.load / (Math.max(1, current) * sampled.capacityPerWorker);
    const up = clamp(Math.ceil(sampled.load / perWorkerTarget), o.min, o.max);
    const down = clamp(Math.ceil(sampled.load / (perWorkerTarget * (1 - o.tolerance))), o.min, o.max);
    const wantsUp = current < o.min || (perCapacity > o.targetPerCapacity * (1 + o.tolerance) && up > current);
    const wantsDown = current > o.max || down < current;
    if (!wantsUp) this.aboveSince = undefined;
    if (!wantsDown) this.belowSince = undefined;
    const load = `${round(perCapacity)} per unit of capacity over ${o.lookBackMs} ms (target ${o.targetPerCapacity})`;
    if (wantsUp) {
      this.aboveSince ??= now;
      if (current >= o.min && now - this.aboveSince < o.upscaleDelayMs) return undefined;
      this.aboveSince = undefined;
      const to = Math.max(up, o.min);
      return { direction: 'up', from: current, to, reason: current < o.min ? `below the minimum of ${o.min}` : `load ${load} for ${o.upscaleDelayMs} ms` };
    }
    if (wantsDown) {
      this.belowSince ??= now;
      if (current <= o.max && now - this.belowSince < o.downscaleDelayMs) return undefined;
      this.belowSince = undefined;
      const to = Math.min(down, o.max);
      return { direction: 'down', from: current, to, reason: current > o.max ? `above the maximum of ${o.max}` : `load ${load} for ${o.downscaleDelayMs} ms` };
    }
    return undefined;
  }

  /** The median load of the look-back window (a mean would let one spike hold it up for the whole window) and the mean capacity. */
  private windowLoad(): { load: number; capacityPerWorker: number } | undefined {
    const n = this.samples.length;
    if (n === 0) return undefined;
    const loads = this.samples.map((s) => s.load).sort((a, b) => a - b);
    const load = n % 2 === 1 ? loads[(n - 1) / 2]! : (loads[n / 2 - 1]! + loads[n / 2]!) / 2;
    let capacity = 0;
    for (const s of this.samples) capacity += s.capacityPerWorker;
    return { load, capacityPerWorker: capacity / n };
  }
}

/** Reads `MIN:MAX` (`--autoscale 1:4`). */
export function parseAutoscaleBounds(text: string): { min: number; max: number } {
  const match = /^(\d+):(\d+)$/.exec(text.trim());
  const min = Number(match?.[1]);
  const max = Number(match?.[2]);
  if (!match || min < 1 || max < min) {
    throw new ZerveError('BAD_CONFIG', `--autoscale takes MIN:MAX with 1 <= MIN <= MAX, e.g. 1:4; got ${JSON.stringify(text)}`);
  }
  return { min, max };
}

function clamp(n: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, n));
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
