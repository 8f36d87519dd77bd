import type { ErrorCode } from '../shared/errors.ts';

/** HTTP status of each error code; 503 answers also carry `Retry-After`. */
export const HTTP_STATUS_OF: Readonly<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  BAD_IMAGE: 400,
  IMAGE_TOO_LARGE: 413,
  PAYLOAD_TOO_LARGE: 413,
  BAD_DATASET: 400,
  UNKNOWN_DATASET: 404,
  UNKNOWN_MODEL: 404,
  UNKNOWN_SERVICE: 404,
  NOT_FOUND: 404,
  UNKNOWN_JOB: 404,
  UNKNOWN_RUN: 404,
  NO_WORKERS: 503,
  OVERLOADED: 503,
  TIMEOUT: 504,
  WORKER_LOST: 502,
  CANCELED: 409,
  INTERNAL: 500,
};
