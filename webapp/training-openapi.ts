/**
 * The training part of the web app's OpenAPI document (`webapp/openapi.ts` spreads these paths and
 * schemas into `OPENAPI_DOCUMENT`). The shapes are those of the training services' replies
 * (shared/training.ts); `TrainRequest` is also what `POST /api/train` checks its body against.
 */
import { JOB_STATES } from '../shared/jobs.ts';
import { TRAIN_PARAMS_SCHEMA, TRAIN_REQUEST_SCHEMA } from '../shared/training-request.ts';

const DATASET_NAME = '^[A-Za-z0-9._-]{1,64}$';
const RUN_ID = '^[A-Za-z0-9-]{1,128}$';
const RUN_STATUSES = ['running', 'succeeded', 'failed', 'canceled'];

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});
const retryAfter = { 'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer' } } };
const unavailable = {
  ...errorResponse('NO_WORKERS (no training worker, or no jobs service) or OVERLOADED: retry after `Retry-After` seconds.'),
  headers: retryAfter,
};
const json = (ref: string) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } });

const paramValues = { type: 'object', additionalProperties: { anyOf: [{ type: 'number' }, { type: 'string' }] } } as const;

const EXPERIMENT_TEST_SCHEMA = {
  type: 'object',
  description: 'Metrics of the chosen configuration on the test split.',
  required: ['accuracy', 'macroPrecision', 'macroRecall', 'macroF1', 'confusion', 'perClass', 'classes'],
  properties: {
    accuracy: { type: 'number', minimum: 0, maximum: 1 },
    macroPrecision: { type: 'number' },
    macroRecall: { type: 'number' },
    macroF1: { type: 'number' },
    logLoss: { type: 'number' },
    confusion: {
      type: 'array',
      description: 'confusion[actual][predicted], in the order of `classes`.',
      items: { type: 'array', items: { type: 'integer', minimum: 0 } },
    },
    perClass: {
      type: 'array',
      items: {
        type: 'object',
        required: ['precision', 'recall', 'f1', 'support'],
        properties: { precision: { type: 'number' }, recall: { type: 'number' }, f1: { type: 'number' }, support: { type: 'integer' } },
      },
    },
    classes: { type: 'array', items: { type: 'string' } },
  },
} as const;

const nullableNumber = { type: 'number', nullable: true } as const;
const nullableString = { type: 'string', nullable: true } as const;
const nullableTime = { type: 'string', format: 'date-time', nullable: true } as const;

const RUN_RECORD_SCHEMA = {
  type: 'object',
  required: ['id', 'experimentId', 'index', 'params', 'status', 'datasetId', 'seed', 'startedAt'],
  properties: {
    id: { type: 'string' },
    experimentId: { type: 'string' },
    index: { type: 'integer', minimum: 1 },
    params: paramValues,
    status: { type: 'string', enum: RUN_STATUSES },
    datasetId: { type: 'string' },
    seed: { type: 'integer' },
    host: nullableString,
    valAccuracy: nullableNumber,
    valLoss: nullableNumber,
    bestEpoch: { type: 'integer', nullable: true },
    epochsRun: { type: 'integer', nullable: true },
    durationMs: nullableNumber,
    startedAt: { type: 'string', format: 'date-time' },
    finishedAt: nullableTime,
    test: { ...EXPERIMENT_TEST_SCHEMA, nullable: true, description: 'The test metrics, on the best run of a finished experiment.' },
    modelName: nullableString,
    modelVersion: nullableString,
    epochs: { type: 'array', description: 'Per-epoch metrics (`GET /api/runs/{id}` only).', items: { $ref: '#/components/schemas/EpochRecord' } },
  },
} as const;

const EXPERIMENT_PROPERTIES = {
  id: { type: 'string' },
  name: nullableString,
  datasetId: { type: 'string' },
  request: { description: 'The training request as the worker received it.' },
  seed: { type: 'integer' },
  codeVersion: { type: 'string' },
  gitCommit: nullableString,
  status: { type: 'string', enum: RUN_STATUSES },
  startedAt: { type: 'string', format: 'date-time' },
  finishedAt: nullableTime,
  durationMs: nullableNumber,
  bestRunId: nullableString,
  test: { ...EXPERIMENT_TEST_SCHEMA, nullable: true },
  modelName: nullableString,
  modelVersion: nullableString,
  error: { ...nullableString, description: '`CODE: message` when the experiment failed or was canceled.' },
  host: nullableString,
  pid: { type: 'integer', nullable: true },
  runs: { type: 'array', items: { $ref: '#/components/schemas/RunRecord' } },
} as const;

const EXPERIMENT_REQUIRED = ['id', 'datasetId', 'seed', 'status', 'startedAt', 'runs'];

const runIdParameter = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'A run id (`e1a2b3c4-1`) or an experiment id (`e1a2b3c4`).',
  schema: { type: 'string', pattern: RUN_ID },
};

export const TRAINING_PATHS = {
  '/api/datasets': {
    get: {
      operationId: 'listDatasets',
      summary: 'Datasets the training workers hold, the built-in `mnist` first (without their skipped files).',
      responses: {
        '200': { description: 'The datasets.', content: { 'application/json': { schema: { type: 'array', items: { $ref: '#/components/schemas/DatasetSummary' } } } } },
        '503': unavailable,
        '504': errorResponse('TIMEOUT.'),
      },
    },
    post: {
      operationId: 'addDataset',
      summary:
        'Adds a dataset: a zip or tar.gz of class folders (`cat/*.jpg`, `dog/*.jpg`, optionally `test/<class>/*`). ' +
        'Answers its manifest summary, with the files left out and why.',
      parameters: [
        {
          name: 'name',
          in: 'query',
          required: false,
          description: 'A name to train with instead of the id.',
          schema: { type: 'string', pattern: DATASET_NAME },
        },
        {
          name: 'shared',
          in: 'query',
          required: false,
          description: 'With auth on: every user may list it and train on it (default: its uploader and admins only).',
          schema: { type: 'boolean' },
        },
      ],
      requestBody: {
        required: true,
        description:
          'The archive: a multipart form with the field `archive`, or the raw bytes (`application/zip`, ' +
          '`application/gzip`, `application/octet-stream`, ...). Larger than the upload limit: 413.',
        content: {
          'multipart/form-data': {
            schema: { type: 'object', properties: { archive: { type: 'string', format: 'binary' } }, required: ['archive'] },
          },
          'application/zip': { schema: { type: 'string', format: 'binary' } },
          'application/gzip': { schema: { type: 'string', format: 'binary' } },
          'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
        },
      },
      responses: {
        '201': { description: 'Added (or already there: the id is the SHA-256 of the bytes).', content: json('DatasetSummary') },
        '400': errorResponse('BAD_REQUEST (no archive) or BAD_DATASET (corrupt or unsafe archive, fewer than two classes, ...).'),
        '413': errorResponse('PAYLOAD_TOO_LARGE: the upload is over the limit.'),
        '503': unavailable,
        '504': errorResponse('TIMEOUT.'),
      },
    },
  },
  '/api/train': {
    post: {
      operationId: 'startTraining',
      summary:
        'Starts a training as a durable job: answers a job ticket at once. Follow `eventsUrl`: each `progress` ' +
        "event's `data` is a training progress message (started, features, epoch); the job's result is the training result.",
      requestBody: { required: true, content: json('TrainRequest') },
      responses: {
        '202': {
          description: 'Accepted: the training is stored as a job and will run.',
          headers: { Location: { description: 'The job URL.', schema: { type: 'string' } } },
          content: json('TrainTicket'),
        },
        '400': errorResponse('BAD_REQUEST: the body is not a valid training request (bad search, unknown hyperparameter, ...).'),
        '404': errorResponse('UNKNOWN_DATASET, or UNKNOWN_MODEL (the backbone is not served).'),
        '413': errorResponse('PAYLOAD_TOO_LARGE: the body is over 64 KiB.'),
        '503': unavailable,
        '504': errorResponse('TIMEOUT.'),
      },
    },
  },
  '/api/runs': {
    get: {
      operationId: 'listRuns',
      summary: 'Tracked experiments, newest first, each with its runs (without their epochs).',
      parameters: [
        { name: 'limit', in: 'query', required: false, description: 'Most experiments (default 50).', schema: { type: 'integer', minimum: 1, maximum: 1000 } },
      ],
      responses: {
        '200': { description: 'The experiments.', content: { 'application/json': { schema: { type: 'array', items: { $ref: '#/components/schemas/ExperimentSummary' } } } } },
        '400': errorResponse('BAD_REQUEST: bad limit.'),
        '503': unavailable,
        '504': errorResponse('TIMEOUT.'),
      },
    },
  },
  '/api/runs/{id}': {
    get: {
      operationId: 'getRun',
      summary: 'A run with its epochs, or an experiment with its runs and their epochs.',
      parameters: [runIdParameter],
      responses: {
        '200': { description: 'The run or experiment.', content: json('RunOrExperiment') },
        '400': errorResponse('BAD_REQUEST: malformed id.'),
        '404': errorResponse('UNKNOWN_RUN: no such run or experiment.'),
        '503': unavailable,
        '504': errorResponse('TIMEOUT.'),
      },
    },
  },
} as const;

export const TRAINING_SCHEMAS = {
  DatasetSummary: {
    type: 'object',
    required: ['id', 'source', 'classes', 'counts', 'images', 'skipped', 'explicitTest'],
    properties: {
      id: { type: 'string', description: 'SHA-256 of the archive, or `mnist`.' },
      name: { type: 'string' },
      source: { type: 'string', enum: ['zip', 'tar.gz', 'folder', 'builtin'] },
      classes: { type: 'array', items: { type: 'string' } },
      counts: {
        type: 'object',
        description: 'Images per class and split.',
        additionalProperties: {
          type: 'object',
          required: ['train', 'test'],
          properties: { train: { type: 'integer', minimum: 0 }, test: { type: 'integer', minimum: 0 } },
        },
      },
      images: { type: 'integer', minimum: 0 },
      skipped: {
        type: 'array',
        description: 'Files left out, and why (not-an-image, corrupt-image, hidden, duplicate, ...).',
        items: {
          type: 'object',
          required: ['path', 'reason'],
          properties: { path: { type: 'string' }, reason: { type: 'string' }, detail: { type: 'string' } },
        },
      },
      explicitTest: { type: 'boolean', description: 'Whether the archive had a test/ folder.' },
    },
  },
  TrainParams: TRAIN_PARAMS_SCHEMA,
  TrainRequest: TRAIN_REQUEST_SCHEMA,
  TrainTicket: {
    type: 'object',
    required: ['id', 'state', 'url', 'eventsUrl', 'runs'],
    properties: {
      id: { type: 'string' },
      state: { type: 'string', enum: [...JOB_STATES] },
      url: { type: 'string' },
      eventsUrl: { type: 'string' },
      runs: { type: 'integer', minimum: 1, description: 'Search combinations the training will run.' },
    },
  },
  EpochRecord: {
    type: 'object',
    required: ['phase', 'epoch', 'loss', 'valAccuracy', 'valLoss', 'elapsedMs'],
    properties: {
      phase: { type: 'string', enum: ['run', 'refit'] },
      epoch: { type: 'integer', minimum: 1 },
      loss: { type: 'number' },
      valAccuracy: { type: 'number' },
      valLoss: { type: 'number' },
      elapsedMs: { type: 'number' },
    },
  },
  ExperimentTest: EXPERIMENT_TEST_SCHEMA,
  RunRecord: RUN_RECORD_SCHEMA,
  ExperimentSummary: { type: 'object', required: EXPERIMENT_REQUIRED, properties: EXPERIMENT_PROPERTIES },
  RunOrExperiment: {
    description: 'A run (has `experimentId` and `epochs`) or an experiment (has `runs`, each with `epochs`).',
    anyOf: [
      { $ref: '#/components/schemas/RunRecord' },
      { type: 'object', required: EXPERIMENT_REQUIRED, properties: EXPERIMENT_PROPERTIES },
    ],
  },
} as const;
