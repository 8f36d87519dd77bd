import { ZerveClient } from '../shared/client.ts';
import type { AutoscaleStatus } from '../shared/cluster-view.ts';
import type { CurveOptions } from '../shared/config.ts';
import { resolveOptions } from '../shared/config.ts';
import { curveOptionsOf } from '../shared/curve-socket-options.ts';
import { logger, type Logger } from '../shared/logger.ts';
import { AutoscaleMetrics } from './autoscale-metrics.ts';
import { DEFAULT_AUTOSCALE_POLICY_OPTIONS, parseAutoscaleBounds } from './autoscale-policy.ts';
import type { ProcessSupervisor } from './process-supervisor.ts';
import { DEFAULT_WORKER_AUTOSCALER_OPTIONS, WorkerAutoscaler } from './worker-autoscaler.ts';

/** The flags `zerve up` shares between its autoscaled kinds (also `ZERVE_*` variables and config file keys). */
const DEFAULT_AUTOSCALE_FLAGS = {
  targetPerCapacity: DEFAULT_AUTOSCALE_POLICY_OPTIONS.targetPerCapacity,
  upscaleDelayMs: DEFAULT_AUTOSCALE_POLICY_OPTIONS.upscaleDelayMs,
  downscaleDelayMs: DEFAULT_AUTOSCALE_POLICY_OPTIONS.downscaleDelayMs,
  lookBackMs: DEFAULT_AUTOSCALE_POLICY_OPTIONS.lookBackMs,
  tolerance: DEFAULT_AUTOSCALE_POLICY_OPTIONS.tolerance,
  autoscaleIntervalMs: DEFAULT_WORKER_AUTOSCALER_OPTIONS.autoscaleIntervalMs,
};

export type ScaledKind = 'inference' | 'training';

/** What `zerve up` runs for `--autoscale` and `--autoscale-training`: nothing when neither is given. */
export interface ClusterAutoscaling {
  readonly metrics: AutoscaleMetrics;
  scales(kind: ScaledKind): boolean;
  /** The fewest workers of an autoscaled kind. */
  min(kind: ScaledKind): number;
  status(): AutoscaleStatus[];
  close(): Promise<void>;
}

export interface AutoscalingParts {
  supervisor: ProcessSupervisor;
  /** The broker's client endpoint, where the load is read. */
  frontend: string;
  curve: Partial<CurveOptions>;
  /** `zerve` arguments that start one worker of each kind. */
  inference: string[];
  training: string[];
}

/**
 * Starts an autoscaler per kind named by `--autoscale MIN:MAX` (inference) and
 * `--autoscale-training MIN:MAX`, each starting its MIN workers. Throws BAD_CONFIG for bounds or
 * options that cannot work, before starting anything.
 */
export function startAutoscaling(flags: Record<string, unknown>, parts: AutoscalingParts, log: Logger = logger): ClusterAutoscaling {
  const shared = resolveOptions(DEFAULT_AUTOSCALE_FLAGS, flags);
  const bounds = {
    inference: flags.autoscale === undefined ? undefined : parseAutoscaleBounds(String(flags.autoscale)),
    training: flags.autoscaleTraining === undefined ? undefined : parseAutoscaleBounds(String(flags.autoscaleTraining)),
  };
  const metrics = new AutoscaleMetrics();
  const kinds = (['inference', 'training'] as const).filter((k) => bounds[k] !== undefined);
  const client = kinds.length === 0 ? undefined : new ZerveClient({ broker: parts.frontend, retries: 0, ...curveOptionsOf({ ...parts.curve } as CurveOptions) }, log);
  const scalers = new Map<ScaledKind, WorkerAutoscaler>();
  try {
    for (const kind of kinds) {
      scalers.set(kind, new WorkerAutoscaler({ ...shared, ...bounds[kind]!, kind }, { supervisor: parts.supervisor, client: client!, command: parts[kind], metrics }, log));
    }
  } catch (err) {
    void client?.close();
    throw err;
  }
  for (const scaler of scalers.values()) scaler.start();
  let closing: Promise<void> | undefined;
  return {
    metrics,
    scales: (kind) => scalers.has(kind),
    min: (kind) => scalers.get(kind)?.options.min ?? 0,
    status: () => [...scalers.values()].map((s) => s.status()),
    close: () =>
      (closing ??= (async () => {
        for (const scaler of scalers.values()) scaler.close();
        await client?.close();
      })()),
  };
}
