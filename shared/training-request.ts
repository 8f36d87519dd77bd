/**
 * The training request, once for both ends: the types a `train` header carries (what to train,
 * the search, the hyperparameters), the JSON schemas they are checked against (the web app's
 * `POST /api/train` body and OpenAPI document, and the training worker's `train` service), and the
 * check itself, which turns an unknown JSON value into a `TrainHeader` or answers BAD_REQUEST.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { ZerveError } from './errors.ts';
import { MODEL_NAME_HINT, MODEL_NAME_RULE } from './model-name.ts';

export type ParamValue = number | string;
/** Hyperparameters by name: learningRate, l2, batchSize, hidden, optimizer, momentum, patience, epochs, lrDecay. */
export type ParamSet = Record<string, ParamValue>;

export interface SearchRequest {
  mode: 'grid' | 'random';
  /** `key=v1,v2` or `key=lo:hi` strings (shared/search-space.ts). */
  params: string[];
  /** Configurations drawn by random search. @defaultValue 8 */
  samples?: number;
}

/** What to train: the `train` header with the family settled (the training worker settles it). */
export interface TrainingRequest {
  datasetId: string;
  /** `mlp`: an MLP on resized pixels; `transfer`: a head on backbone embeddings. */
  family: 'mlp' | 'transfer';
  /** Pixel features of the mlp family. @defaultValue { width: 28, height: 28, channels: 1 } */
  pixels?: { width: number; height: number; channels: 1 | 3 };
  /** Backbone name: a model of the repository with a squeezenet layout (transfer family). */
  backbone?: string;
  /** Transfer head: `linear` (softmax regression) or `mlp` (one hidden layer unless `hidden` says). @defaultValue 'linear' */
  head?: 'linear' | 'mlp';
  /** Fixed hyperparameters (same keys as the search). */
  params?: ParamSet;
  search?: SearchRequest;
  /** Most epochs per run. @defaultValue 20 */
  epochs?: number;
  /**
   * `auto`: the dataset's explicit test set if it has one, else a stratified holdout of
   * `testFraction`. Validation (early stopping, model choice) is a stratified holdout of
   * `validationFraction` of the rest, or k folds when `folds` is set. @defaultValue { kind: 'auto' }
   */
  split?: { kind: 'auto' | 'holdout' | 'explicit'; testFraction?: number; validationFraction?: number; folds?: number };
  /** Random pixel shifts of up to this many pixels for pixel features (0 = none). @defaultValue 0 */
  augmentShiftPx?: number;
  /** @defaultValue 1 */
  seed?: number;
  /** Id of the user who started the training, recorded with the experiment in the run store; set by the web app when auth is on. */
  owner?: string;
  /** Export the refitted best model as the next version of `name`. */
  export?: { name: string; description?: string };
}

/**
 * Where to report a training's end (succeeded, failed or canceled): `webhook` gets a JSON POST of
 * a `TrainingNotification`, `email` (one address or several) a plain-text mail, sent through the
 * training worker's `smtp` server (a worker without one answers such a request BAD_REQUEST).
 * Delivery failures are logged by the worker and never change the training's reply.
 */
export interface TrainNotify {
  /** An http: or https: URL. */
  webhook?: string;
  email?: string | string[];
}

/**
 * Frame 0 of `train`: a training request whose family may be left to the worker (transfer for a
 * photo dataset when a backbone is served, else mlp), where to report its end, and the broker's deadline.
 */
export type TrainHeader = Omit<TrainingRequest, 'family'> & {
  family?: TrainingRequest['family'];
  notify?: TrainNotify;
  deadlineMs?: number;
  /**
   * An idempotency key (shared/idempotency-key.ts): a `train` with the key of an experiment this
   * worker runs follows it (its PARTIALs and FINAL), and one with the key of an experiment it finished
   * gets that answer, instead of training again. The jobs service sends `job:<id>`.
   */
  key?: string;
};

/** A dataset id or name. */
const NAME = '^[A-Za-z0-9._-]{1,64}$';

/** Hyperparameters a run takes (fixed in `params`, or one point of the search). */
export const TRAIN_PARAMS_SCHEMA = {
  type: 'object',
  description: 'Hyperparameters of a run. Unset ones take the trainer defaults.',
  additionalProperties: false,
  properties: {
    learningRate: { type: 'number', exclusiveMinimum: 0, maximum: 10 },
    l2: { type: 'number', minimum: 0, maximum: 10 },
    batchSize: { type: 'integer', minimum: 1, maximum: 65536 },
    hidden: {
      description: 'Hidden layer sizes: `128`, `"256x64"`, or `"none"`.',
      anyOf: [
        { type: 'integer', minimum: 0, maximum: 4096 },
        { type: 'string', pattern: '^(none|[1-9][0-9]{0,3}(x[1-9][0-9]{0,3})*)$' },
      ],
    },
    optimizer: { type: 'string', enum: ['adam', 'sgd'] },
    momentum: { type: 'number', minimum: 0, maximum: 1 },
    patience: { type: 'integer', minimum: 1, maximum: 1000 },
    epochs: { type: 'integer', minimum: 1, maximum: 1000 },
    lrDecay: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
  },
} as const;

/** Body of `POST /api/train`: the `train` service's header without `deadlineMs`. */
export const TRAIN_REQUEST_SCHEMA = {
  type: 'object',
  required: ['datasetId'],
  additionalProperties: false,
  properties: {
    datasetId: {
      type: 'string',
      pattern: NAME,
      description: 'A dataset id or the name it was added under (`GET /api/datasets`), or `mnist` (built in).',
    },
    family: { type: 'string', enum: ['mlp', 'transfer'], description: '`mlp` on resized pixels (default), or `transfer`: a head on backbone embeddings.' },
    backbone: { type: 'string', pattern: MODEL_NAME_RULE, description: 'Family transfer: a served squeezenet model whose embeddings feed the head.' },
    head: { type: 'string', enum: ['linear', 'mlp'], description: 'Family transfer: the head (default linear).' },
    params: TRAIN_PARAMS_SCHEMA,
    search: {
      type: 'object',
      required: ['mode', 'params'],
      additionalProperties: false,
      description: 'Grid: every combination of `key=v1,v2` lists. Random: `samples` draws over `key=lo:hi` ranges and lists.',
      properties: {
        mode: { type: 'string', enum: ['grid', 'random'] },
        params: { type: 'array', maxItems: 20, items: { type: 'string', minLength: 3, maxLength: 500 } },
        samples: { type: 'integer', minimum: 1, maximum: 1000, description: 'Random search draws (default 8).' },
      },
    },
    epochs: { type: 'integer', minimum: 1, maximum: 1000, description: 'Most epochs per run (default 20).' },
    split: {
      type: 'object',
      required: ['kind'],
      additionalProperties: false,
      description:
        '`auto`: the dataset test/ folder if any, else a holdout of `testFraction`. `holdout`: always a holdout. ' +
        '`explicit`: the test/ folder. `folds` (2 to 20) validates by k folds instead of a holdout.',
      properties: {
        kind: { type: 'string', enum: ['auto', 'holdout', 'explicit'] },
        testFraction: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
        validationFraction: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
        folds: { type: 'integer', minimum: 2, maximum: 20 },
      },
    },
    seed: { type: 'integer', minimum: 0, maximum: 2147483647 },
    owner: { type: 'string', maxLength: 128, description: 'Who started it: set by the web app when auth is on (a value sent is replaced).' },
    augmentShiftPx: { type: 'integer', minimum: 0, maximum: 8, description: 'Random pixel shifts (family mlp).' },
    pixels: {
      type: 'object',
      required: ['width', 'height', 'channels'],
      additionalProperties: false,
      description: 'Family mlp: the pixel features (default 28x28 grey).',
      properties: {
        width: { type: 'integer', minimum: 4, maximum: 256 },
        height: { type: 'integer', minimum: 4, maximum: 256 },
        channels: { type: 'integer', enum: [1, 3] },
      },
    },
    export: {
      type: 'object',
      required: ['name'],
      additionalProperties: false,
      description: 'Export the best model as the next version of `name`, served as `classify.<name>`.',
      properties: {
        name: { type: 'string', pattern: MODEL_NAME_RULE, description: `A model name: ${MODEL_NAME_HINT}.` },
        description: { type: 'string', maxLength: 500 },
      },
    },
    notify: {
      type: 'object',
      additionalProperties: false,
      description: 'When the training ends: a JSON POST to `webhook`, and an email to `email` (the training worker needs `--smtp`).',
      properties: {
        webhook: { type: 'string', pattern: '^https?://', maxLength: 2048 },
        email: { anyOf: [{ type: 'string', maxLength: 254 }, { type: 'array', minItems: 1, maxItems: 10, items: { type: 'string', maxLength: 254 } }] },
      },
    },
  },
} as const;

/** A schema error as `{in, parameter, message}` (the shape the web app's parameter checks answer), `parameter` a dotted path. */
export interface SchemaProblem {
  in: 'body';
  parameter: string;
  message: string;
}

function problems(errors: ErrorObject[] | null | undefined, prefix: string): SchemaProblem[] {
  return (errors ?? []).map((e) => {
    const path = [prefix, ...e.instancePath.split('/').filter(Boolean)].filter(Boolean).join('.');
    const extra = (e.params as { additionalProperty?: string }).additionalProperty;
    const missing = (e.params as { missingProperty?: string }).missingProperty;
    if (extra !== undefined) return { in: 'body', parameter: path || extra, message: `has no field ${JSON.stringify(extra)}` };
    if (missing !== undefined) return { in: 'body', parameter: [path, missing].filter(Boolean).join('.'), message: 'is required' };
    return { in: 'body', parameter: path, message: e.message ?? 'is invalid' };
  });
}

/** BAD_REQUEST naming the first problem, with all of them in `details.errors`. */
function schemaError(what: string, errors: SchemaProblem[]): ZerveError {
  const first = errors[0];
  const message = first ? `${what}: ${first.parameter ? `${first.parameter} ` : ''}${first.message}` : `${what} is invalid`;
  return new ZerveError('BAD_REQUEST', message, { details: { errors } });
}

let checks: { header: ValidateFunction<Omit<TrainHeader, 'deadlineMs' | 'key'>>; params: ValidateFunction<ParamSet> } | undefined;

/**
 * Compiles the checks (about 0.1 s of CPU, once per process; the first check does it otherwise).
 * The training worker calls it before its heartbeats start, so that time never delays them.
 */
export function compileTrainChecks(): NonNullable<typeof checks> {
  if (!checks) {
    const ajv = new Ajv({ allErrors: true, strict: true });
    checks = { header: ajv.compile<Omit<TrainHeader, 'deadlineMs' | 'key'>>(TRAIN_REQUEST_SCHEMA), params: ajv.compile<ParamSet>(TRAIN_PARAMS_SCHEMA) };
  }
  return checks;
}

/** `value` as a training request (a `train` header without `deadlineMs`), or BAD_REQUEST saying what is wrong. */
export function checkTrainRequest(value: unknown, what = 'training request'): Omit<TrainHeader, 'deadlineMs' | 'key'> {
  const check = compileTrainChecks().header;
  if (!check(value)) throw schemaError(what, problems(check.errors, ''));
  return value;
}

/** `value` as hyperparameters, or BAD_REQUEST; `what` names them in the message. */
export function checkTrainParams(value: unknown, what: string): ParamSet {
  const check = compileTrainChecks().params;
  if (!check(value)) throw schemaError(what, problems(check.errors, 'params'));
  return value;
}
