/**
 * Which services a client may send twice: those whose requests change nothing (a classification, an
 * inference, a model's metadata, the cluster's catalog). A client resends them through another broker
 * when the one holding them goes away; any other request is resent only with an idempotency key.
 */
import { INFER_PREFIX } from './infer-messages.ts';
import { JOBS_STATUS } from './jobs.ts';
import { MODELS_FETCH_PREFIX } from './models.ts';
import { CLASSIFY_PREFIX, MMI_PREFIX, MODELS_DESCRIBE } from './protocol.ts';
import { DATASETS_GET, DATASETS_LIST, RUNS_GET, RUNS_LIST } from './training.ts';

const PREFIXES = [CLASSIFY_PREFIX, INFER_PREFIX, MMI_PREFIX, MODELS_FETCH_PREFIX];
/** Per-worker forms (`runs.list.<worker>`) start with these too. */
const READS = [JOBS_STATUS, MODELS_DESCRIBE, DATASETS_LIST, DATASETS_GET, RUNS_LIST, RUNS_GET];

/** Whether a request to `service` may run twice without harm. */
export function isIdempotentService(service: string): boolean {
  return PREFIXES.some((prefix) => service.startsWith(prefix)) || READS.some((read) => service === read || service.startsWith(`${read}.`));
}
