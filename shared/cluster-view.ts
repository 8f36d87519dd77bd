/**
 * What the /cluster page receives from the web app (`GET /cluster/snapshot`, the `snapshot` events of
 * `GET /cluster/events`, `GET /cluster/history`). Everything is keyed by broker endpoint, so several
 * brokers show both summed (`broker: '*'`) and one by one.
 */
import type { WorkerInfo } from './messages.ts';

/** The `broker` of rows and history summed over every broker. */
export const ALL_BROKERS = '*';

/** One broker as the web app last polled it. */
export interface ClusterBroker {
  endpoint: string;
  /** Whether its last poll was answered. */
  up: boolean;
  /** The error code of its last failed poll. */
  error?: string;
  workers: number;
  services: number;
  requeues: number;
  lost: number;
  overloaded: number;
}

/** A worker as `mmi.workers` lists it, with the broker it is registered at. */
export interface ClusterWorker extends WorkerInfo {
  broker: string;
}

/** One service at one broker, or summed over all of them (`broker: '*'`). */
export interface ClusterServiceRow {
  broker: string;
  name: string;
  workers: number;
  capacity: number;
  inFlight: number;
  queued: number;
  /** Requests answered per second over the rate window. */
  rps: number;
  /** Latency at the broker (arrival to final reply) over the rate window; null without requests. */
  p50Ms: number | null;
  p99Ms: number | null;
  /** Median time waited in the queue over the rate window. */
  queueP50Ms: number | null;
  /** Errors answered per second over the rate window. */
  errorsPerS: number;
  /** Requests answered since the broker started, by outcome (`OK` or the error code). */
  outcomes: Record<string, number>;
}

/** One autoscaling decision of `zerve up --autoscale`. */
export interface AutoscaleDecision {
  /** Epoch milliseconds. */
  at: number;
  kind: string;
  direction: 'up' | 'down';
  from: number;
  to: number;
  reason: string;
}

/** The state of one autoscaled worker kind. */
export interface AutoscaleStatus {
  kind: string;
  min: number;
  max: number;
  /** Worker processes it wants. */
  desired: number;
  /** (In flight + queued) per unit of capacity over the look-back window. */
  loadPerCapacity: number;
  target: number;
  decisions: AutoscaleDecision[];
}

/** The whole cluster at one poll. */
export interface ClusterSnapshot {
  /** Epoch milliseconds of the poll. */
  at: number;
  pollMs: number;
  brokers: ClusterBroker[];
  workers: ClusterWorker[];
  /** Rows of each broker, and summed rows (`broker: '*'`). */
  services: ClusterServiceRow[];
  /** Every service added up (name ''): one row per broker and one summed (`broker: '*'`); `workers` counts worker connections. */
  totals: ClusterServiceRow[];
  autoscale: AutoscaleStatus[];
}

/** Columns of a history: one value per poll, aligned with `at`; null where there was nothing to measure. */
export interface ClusterHistory {
  /** `*` (all brokers summed), a broker endpoint, or `service:<name>` (summed over brokers). */
  key: string;
  /** Epoch seconds (uPlot's time axis). */
  at: number[];
  rps: number[];
  errorsPerS: number[];
  p50Ms: (number | null)[];
  p99Ms: (number | null)[];
  queued: number[];
  inFlight: number[];
  workers: number[];
}
