/**
 * Message bodies of the training services, shared by training workers and their clients (CLI, web
 * app, jobs, any other language). Every body frame 0 is JSON; every reply one JSON frame.
 *
 * - `train`: `[JSON TrainHeader]` → PARTIALs (`TrainStarted`, then `TrainEpoch` per epoch of every
 *   run and of the refit) → FINAL `TrainResultMessage`. Send a large `deadlineMs`: the broker
 *   answers TIMEOUT when it passes, even while the worker trains.
 * - `train.run`: one search combination (`TrainRunRequest`), fanned out by the `train` handler →
 *   PARTIAL `TrainStarted` and `TrainEpoch`s → FINAL `RunResult`.
 * - `train.cancel.<worker>`: `[JSON {"experimentId"}]` → `{"canceled": boolean}`; the service name
 *   comes in the `TrainStarted` PARTIAL. The running request then ends with the error CANCELED.
 * - `datasets.add`: `[JSON {"name"?, "key"?}, archive bytes (zip or tar.gz)]` → `DatasetSummary`. A
 *   resend with the same `key` (shared/idempotency-key.ts) to the same worker gets the first answer.
 * - `datasets.list`: `[]` → `DatasetSummary[]`; `datasets.get`: `[JSON {"id"}]` → the manifest.
 * - `runs.list`: `[JSON RunsListRequest]` → `ExperimentSummary[]`; `runs.get`: `[JSON {"id"}]` → a
 *   `RunRecord` with epochs, or an `ExperimentDetail`; UNKNOWN_RUN when neither. Answered from the
 *   run store of the worker's data directory (share it between the training workers of a host).
 * - `datasets.fetch.<id>`: offered by every training worker that holds dataset `<id>`, so the broker
 *   routes it only to a holder (`mmi.service` tells whether one exists). `[JSON DatasetFetchRequest]`
 *   → `[JSON DatasetFetchReply, ...image files]`: the receiver asks chunk after chunk (`from`), so
 *   memory stays bounded by `maxBytes` on both ends.
 */
import type { ZerveClient } from './client.ts';
import { type CancelHandle, type JobSubmitRequest } from './jobs.ts';
import { ZerveError, type ErrorCode } from './errors.ts';
import { decodeReply, encodeJson } from './messages.ts';
import type { TrainHeader, TrainingRequest } from './training-request.ts';

// The request types live in shared/training-request.ts; re-exported for the services' clients.
export type { TrainHeader, TrainNotify } from './training-request.ts';

import { TRAIN_SERVICE } from './services.ts';

// Service names live in shared/services.ts; re-exported for the modules that import them from here.
export {
  DATASETS_ADD,
  DATASETS_FETCH_PREFIX,
  DATASETS_GET,
  DATASETS_LIST,
  RUNS_GET,
  RUNS_LIST,
  TRAIN_CANCEL_PREFIX,
  TRAIN_RUN_SERVICE,
  TRAIN_SERVICE,
  datasetFetchService,
} from './services.ts';

/** A training request's default deadline: searches may take hours. */
export const DEFAULT_TRAIN_DEADLINE_MS = 24 * 60 * 60 * 1000;
/** Longest silence between a training's replies before its client gives up (TIMEOUT). */
export const TRAIN_SILENCE_TIMEOUT_MS = 30 * 60 * 1000;

/**
 * The body of a `jobs.submit` that runs `header` as a durable job (`[JSON JobSubmitRequest,
 * JSON train header]`). `maxAttempts` 1 (the default) fails the job with WORKER_LOST when its
 * training worker dies; 2 trains again once on another worker.
 */
export function trainingJobFrames(header: TrainHeader, options: { maxAttempts?: number; key?: string } = {}): Buffer[] {
  const submit: JobSubmitRequest = {
    service: TRAIN_SERVICE,
    timeoutMs: TRAIN_SILENCE_TIMEOUT_MS,
    maxAttempts: options.maxAttempts ?? 1,
    announcesCancel: true,
    keyed: true,
    ...(options.key ? { key: options.key } : {}),
  };
  return [encodeJson(submit), encodeJson({ deadlineMs: DEFAULT_TRAIN_DEADLINE_MS, ...header })];
}

/** The request `zerve up` sends on an empty model repository: ≥ 0.95 test accuracy in seconds. */
export const DIGITS_REQUEST: TrainingRequest = {
  datasetId: 'mnist',
  family: 'mlp',
  params: { learningRate: 0.003, hidden: 128, lrDecay: 0.85 },
  epochs: 12,
  augmentShiftPx: 1,
  seed: 1,
  export: { name: 'digits', description: 'built-in: an MLP trained on the mnist package digits' },
};

/** The first PARTIAL: where to cancel (the jobs worker forwards `jobs.cancel` there). */
export interface TrainStarted extends CancelHandle {
  type: 'started';
  host: string;
  pid: number;
  runs?: number;
  /** What the worker trains, defaults applied (a photo dataset defaults to transfer when a backbone is there). */
  family?: 'mlp' | 'transfer';
  backbone?: string;
}

export interface TrainEpoch {
  type: 'epoch';
  experimentId: string;
  phase: 'run' | 'refit';
  /** 1-based run index and run count. */
  run: number;
  runs: number;
  runId: string;
  params: Record<string, number | string>;
  epoch: number;
  epochs: number;
  loss: number;
  valAccuracy: number;
  valLoss: number;
  elapsedMs: number;
  etaMs: number;
}

export interface TrainFeatures {
  type: 'features';
  experimentId: string;
  done: number;
  total: number;
}

export type TrainProgressMessage = TrainStarted | TrainEpoch | TrainFeatures;

export interface TrainResultMessage {
  experimentId: string;
  datasetId: string;
  classes: string[];
  best: { runId: string; params: Record<string, number | string>; valAccuracy: number; valLoss: number; bestEpoch: number };
  runs: { runId: string; params: Record<string, number | string>; valAccuracy: number; valLoss: number; bestEpoch: number; epochsRun: number; elapsedMs: number; host?: string; pid?: number }[];
  test: { accuracy: number; macroPrecision: number; macroRecall: number; macroF1: number; logLoss?: number; confusion: number[][] };
  model?: { name: string; version: string };
  elapsedMs: number;
}

/**
 * The JSON body POSTed to `notify.webhook` once an experiment ends (`content-type:
 * application/json`, `user-agent: zerve/<version>`). Fields that do not apply are null.
 */
export interface TrainingNotification {
  event: 'training.finished';
  experimentId: string;
  status: 'succeeded' | 'failed' | 'canceled';
  /** The dataset id, and the name it was added under (`mnist` for the built-in one). */
  dataset: { id: string; name: string | null };
  /** The model name the request exports as (`export.name`), even when the training failed. */
  name: string | null;
  /** The exported model, once it is served as `classify.<name>`. */
  model: { name: string; version: string } | null;
  best: TrainResultMessage['best'] | null;
  /** Search combinations tried. */
  runs: number;
  /** Metrics of the refitted best model on the test split (the confusion matrix is left out). */
  test: Omit<TrainResultMessage['test'], 'confusion'> | null;
  error: { code: ErrorCode; message: string } | null;
  durationMs: number;
  startedAt: string;
  finishedAt: string;
  /** The training worker that orchestrated the experiment. */
  host: string;
  pid: number;
}

/** Frame 0 of `datasets.fetch.<id>`. */
export interface DatasetFetchRequest {
  deadlineMs?: number;
  /** Index in the manifest's `images` of the first image wanted. */
  from: number;
  /** Image bytes wanted in this reply; at least one image comes whatever the budget. @defaultValue 8388608 */
  maxBytes?: number;
}

/**
 * Frame 0 of the `datasets.fetch.<id>` reply; frames 1..count are the files of
 * `manifest.images[from .. from + count)` as stored. The receiver checks each against its manifest
 * entry (SHA-256, file name) before storing anything.
 */
export interface DatasetFetchReply {
  id: string;
  /** Images in the dataset (`manifest.images.length`). */
  total: number;
  from: number;
  count: number;
  /** Bytes of the image frames. */
  bytes: number;
  /** The dataset's `manifest.json`, in the reply to `from: 0` only. */
  manifest?: unknown;
}

/**
 * PARTIAL of `train.run` while the worker fetches the dataset from another training worker (keeps the
 * orchestrator's wait alive on long fetches); `done`/`total` count images.
 */
export interface TrainDatasetFetch {
  type: 'dataset';
  experimentId: string;
  datasetId: string;
  done: number;
  total: number;
  bytes: number;
}

export interface DatasetSummary {
  id: string;
  name?: string;
  source: string;
  classes: string[];
  counts: Record<string, { train: number; test: number }>;
  images: number;
  skipped: { path: string; reason: string; detail?: string }[];
  explicitTest: boolean;
}

/**
 * Sends `train` and yields its progress; resolves with the result. When `signal` aborts, sends the
 * cancel to the worker and waits for the run to stop (the request then rejects with CANCELED).
 */
export async function requestTraining(
  client: ZerveClient,
  header: TrainHeader,
  options: { signal?: AbortSignal; onProgress?: (message: TrainProgressMessage) => void; timeoutMs?: number } = {},
): Promise<TrainResultMessage> {
  let started: TrainStarted | undefined;
  let cancelSent = false;
  const cancel = () => {
    if (!started || cancelSent) return;
    cancelSent = true;
    client.requestJson(started.cancelService, [encodeJson({ experimentId: started.experimentId })], { timeoutMs: 10_000 }).catch(() => undefined);
  };
  options.signal?.addEventListener('abort', cancel, { once: true });
  try {
    const body = [encodeJson({ deadlineMs: DEFAULT_TRAIN_DEADLINE_MS, ...header })];
    // A PARTIAL restarts the wait, so the timeout bounds the silence between epochs, not the whole run.
    for await (const chunk of client.stream(TRAIN_SERVICE, body, { timeoutMs: options.timeoutMs ?? TRAIN_SILENCE_TIMEOUT_MS })) {
      if (chunk.final) return decodeReply<TrainResultMessage>(chunk.body[0]);
      const message = decodeReply<TrainProgressMessage>(chunk.body[0]);
      if (message.type === 'started' && !started) {
        started = message;
        if (options.signal?.aborted) cancel();
      }
      options.onProgress?.(message);
    }
    throw new ZerveError('INTERNAL', 'reply stream ended without a FINAL');
  } finally {
    options.signal?.removeEventListener('abort', cancel);
  }
}

// Run store records, the answers of `runs.list` and `runs.get` (and `zerve runs --format json`).

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'canceled';

export interface ExperimentRecord {
  id: string;
  name: string | null;
  datasetId: string;
  request: unknown;
  seed: number;
  codeVersion: string;
  gitCommit: string | null;
  status: RunStatus;
  startedAt: string;
  finishedAt: string | null;
  durationMs: number | null;
  bestRunId: string | null;
  /** Metrics of the chosen configuration on the test split, once the experiment succeeded. */
  test: ExperimentTest | null;
  modelName: string | null;
  modelVersion: string | null;
  /** `CODE: message` when the experiment failed or was canceled. */
  error: string | null;
  /** The training worker that orchestrated the experiment. */
  host: string | null;
  pid: number | null;
}

export interface ExperimentTest {
  accuracy: number;
  macroPrecision: number;
  macroRecall: number;
  macroF1: number;
  logLoss?: number;
  /** confusion[actual][predicted], in the order of `classes`. */
  confusion: number[][];
  perClass: { precision: number; recall: number; f1: number; support: number }[];
  classes: string[];
}

/** Frame 0 of `runs.list`; the answer is `ExperimentSummary[]`, newest first. */
export interface RunsListRequest {
  limit?: number;
}

/** An experiment with its runs (without their epochs). */
export type ExperimentSummary = ExperimentRecord & { runs: RunRecord[] };

/** Frame 0 of `runs.get`: a run id (answer `RunRecord` with epochs) or an experiment id (answer `ExperimentDetail`). */
export interface RunsGetRequest {
  id: string;
}

/** An experiment with its runs, each with its epochs. */
export type ExperimentDetail = ExperimentRecord & { runs: RunRecord[] };

export interface EpochRecord {
  phase: 'run' | 'refit';
  epoch: number;
  loss: number;
  valAccuracy: number;
  valLoss: number;
  elapsedMs: number;
}

export interface RunRecord {
  id: string;
  experimentId: string;
  index: number;
  params: Record<string, number | string>;
  status: RunStatus;
  datasetId: string;
  seed: number;
  host: string | null;
  valAccuracy: number | null;
  valLoss: number | null;
  bestEpoch: number | null;
  epochsRun: number | null;
  durationMs: number | null;
  startedAt: string;
  finishedAt: string | null;
  /** Filled for the best run of a finished experiment. */
  test?: ExperimentTest | null;
  modelName?: string | null;
  modelVersion?: string | null;
  epochs?: EpochRecord[];
}
