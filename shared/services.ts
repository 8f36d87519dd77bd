/**
 * Every service name of the cluster, in one place: the broker's own (`mmi.*`, RFC 8) and the
 * application services workers offer. The broker routes on these names and knows none but `mmi.*`;
 * workers declare the properties of their services (capacity, idempotence) in READY.
 */

/** Prefix of the broker's own services (RFC 8). */
export const MMI_PREFIX = 'mmi.';
export const MMI_SERVICE = 'mmi.service';
export const MMI_SERVICES = 'mmi.services';
export const MMI_WORKERS = 'mmi.workers';
/** How the broker's sockets authenticate (`SecurityInfo`): `zerve status` shows an open worker socket. */
export const MMI_SECURITY = 'mmi.security';
/** The broker's cumulative request counts and latency histograms by service (`BrokerStats`), for the /cluster page. */
export const MMI_STATS = 'mmi.stats';
/**
 * A CURVE client proves its key to the broker (body `[JSON KeyProof]`, shared/key-proof.ts) so that
 * the broker can map it to a user (`--client-users`); answers `200`, `400` (bad proof) or `501` (no
 * user map).
 */
export const MMI_IDENTIFY = 'mmi.identify';

/** `classify.<model>`: one service per model, so a worker may host any subset of models. */
export const CLASSIFY_PREFIX = 'classify.';
/** `infer.<model>`: a model's tensor and batch inference, beside `classify.<model>` on the same workers. */
export const INFER_PREFIX = 'infer.';
/** Answered by every inference worker: `{"models":[...]}` describing the models it serves. */
export const MODELS_DESCRIBE = 'models.describe';
/** `models.fetch.<name>.<version>.<sha256>`: chunks of a model version, offered by every holder. */
export const MODELS_FETCH_PREFIX = 'models.fetch.';
/** `models.removed.<name>.<version>`: a removed version's tombstone, offered by every holder that keeps it (docs/models.md). */
export const MODELS_REMOVED_PREFIX = 'models.removed.';
export const ECHO_SERVICE = 'echo';

export const JOBS_PREFIX = 'jobs.';
export const JOBS_SUBMIT = 'jobs.submit';
export const JOBS_STATUS = 'jobs.status';
export const JOBS_CANCEL = 'jobs.cancel';
export const JOBS_SERVICES = [JOBS_SUBMIT, JOBS_STATUS, JOBS_CANCEL] as const;

export const TRAIN_SERVICE = 'train';
export const TRAIN_RUN_SERVICE = 'train.run';
/** `train.cancel.<worker>`: cancels a running training on the worker that announced it. */
export const TRAIN_CANCEL_PREFIX = 'train.cancel.';
export const DATASETS_ADD = 'datasets.add';
export const DATASETS_LIST = 'datasets.list';
export const DATASETS_GET = 'datasets.get';
/** `datasets.fetch.<id>`: one service per stored dataset, offered by the workers that hold it. */
export const DATASETS_FETCH_PREFIX = 'datasets.fetch.';
export const RUNS_LIST = 'runs.list';
export const RUNS_GET = 'runs.get';

/** Service of a model's classification. */
export function classifyService(model: string): string {
  return `${CLASSIFY_PREFIX}${model}`;
}

/** Service of a model's tensor and batch inference. */
export function inferService(model: string): string {
  return `${INFER_PREFIX}${model}`;
}

/** Service of one stored dataset's chunks. */
export function datasetFetchService(id: string): string {
  return `${DATASETS_FETCH_PREFIX}${id}`;
}
