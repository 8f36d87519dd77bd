/**
 * The catalog of Zerve's Prometheus metrics: one definition of each name, its help, labels and
 * buckets, used by the process that measures it, by the broker that relays worker metrics, and by the
 * Grafana dashboard's test. Names follow Triton's where one exists, with the prefix `zerve_`.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricSpec {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly labelNames: readonly string[];
  /** Upper bounds of a histogram's buckets, in seconds, ascending (+Inf is implied). */
  readonly buckets?: readonly number[];
}

/** Request and inference latencies: 1 ms to 30 s. */
export const DURATION_BUCKETS_S: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const spec = <T extends MetricSpec>(s: T): T => s;

export const METRICS = {
  // The broker's own, measured as requests pass through it.
  requestTotal: spec({ name: 'zerve_request_total', help: 'Requests answered, by outcome: OK or the error code.', type: 'counter', labelNames: ['service', 'code'] }),
  requestDuration: spec({ name: 'zerve_request_duration_seconds', help: 'Time from arrival at the broker to the final reply.', type: 'histogram', labelNames: ['service'], buckets: DURATION_BUCKETS_S }),
  queueDuration: spec({ name: 'zerve_queue_duration_seconds', help: 'Time a request waited at the broker for a worker with free capacity.', type: 'histogram', labelNames: ['service'], buckets: DURATION_BUCKETS_S }),
  queueDepth: spec({ name: 'zerve_queue_depth', help: 'Requests waiting at the broker for a worker.', type: 'gauge', labelNames: ['service'] }),
  inflight: spec({ name: 'zerve_inflight', help: 'Requests dispatched to a worker and not yet answered.', type: 'gauge', labelNames: ['service'] }),
  workers: spec({ name: 'zerve_workers', help: 'Workers offering the service.', type: 'gauge', labelNames: ['service'] }),
  workerCapacity: spec({ name: 'zerve_worker_capacity', help: 'Requests the workers of the service take at once, summed.', type: 'gauge', labelNames: ['service'] }),
  workerRequeues: spec({ name: 'zerve_worker_requeues_total', help: 'Requests sent to another worker because theirs was lost.', type: 'counter', labelNames: [] }),
  workerLost: spec({ name: 'zerve_worker_lost_total', help: 'Workers dropped without saying DISCONNECT (heartbeat expired or protocol violation).', type: 'counter', labelNames: [] }),
  overloaded: spec({ name: 'zerve_overloaded_total', help: 'Requests refused OVERLOADED by the broker (full queue or send queue).', type: 'counter', labelNames: [] }),
  // Measured in the workers and relayed to the broker in heartbeats.
  inferenceDuration: spec({ name: 'zerve_inference_duration_seconds', help: 'Time onnxruntime spent on a request.', type: 'histogram', labelNames: ['model', 'version'], buckets: DURATION_BUCKETS_S }),
  decodeDuration: spec({ name: 'zerve_decode_duration_seconds', help: 'Time decoding and preprocessing an image took.', type: 'histogram', labelNames: ['model', 'version'], buckets: DURATION_BUCKETS_S }),
  inferenceTotal: spec({ name: 'zerve_inference_total', help: 'Successful inferences.', type: 'counter', labelNames: ['model', 'version'] }),
  resultCache: spec({ name: 'zerve_result_cache_total', help: "Classifications looked up in an inference worker's result cache, by result: hit or miss.", type: 'counter', labelNames: ['model', 'version', 'result'] }),
  trainingExperiments: spec({ name: 'zerve_training_experiments_total', help: 'Training experiments finished, by state: succeeded, failed or canceled.', type: 'counter', labelNames: ['state'] }),
  jobs: spec({ name: 'zerve_jobs', help: 'Durable jobs in the store, by state.', type: 'gauge', labelNames: ['state'] }),
  // zerve up's autoscaler (scripts/worker-autoscaler.ts), served on the web app's /metrics.
  autoscaleDecisions: spec({ name: 'zerve_autoscale_decisions_total', help: 'Autoscaling decisions of zerve up, by worker kind and direction: up or down.', type: 'counter', labelNames: ['kind', 'direction'] }),
  workersDesired: spec({ name: 'zerve_workers_desired', help: 'Worker processes the autoscaler of zerve up wants, by kind.', type: 'gauge', labelNames: ['kind'] }),
  // The web app's own.
  httpRequestDuration: spec({ name: 'zerve_http_request_duration_seconds', help: 'Time the web app took to answer an HTTP request.', type: 'histogram', labelNames: ['route', 'status'], buckets: DURATION_BUCKETS_S }),
} as const;

/** Worker metrics the broker accepts in heartbeats and shows summed over the cluster. */
export const RELAYED_METRICS: readonly MetricSpec[] = [
  METRICS.inferenceDuration,
  METRICS.decodeDuration,
  METRICS.inferenceTotal,
  METRICS.resultCache,
  METRICS.trainingExperiments,
  METRICS.jobs,
];

