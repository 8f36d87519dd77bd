import express, { type RequestHandler, type Response } from 'express';
import type { ZerveClient } from '../shared/client.ts';
import { clusterDatasets } from '../shared/cluster-datasets.ts';
import { ClusterRuns } from '../shared/cluster-runs.ts';
import type { StoreRuns } from '../shared/store/store-runs.ts';
import type { WebAppOptions } from '../shared/config.ts';
import { ZerveError } from '../shared/errors.ts';
import { JOBS_SUBMIT, type JobTicket } from '../shared/jobs.ts';
import { encodeJson } from '../shared/messages.ts';
import {
  DATASETS_ADD,
  DATASETS_LIST,
  RUNS_GET,
  RUNS_LIST,
  TRAIN_SERVICE,
  datasetFetchService,
  trainingJobFrames,
  type DatasetSummary,
  type TrainHeader,
} from '../shared/training.ts';
import { IDEMPOTENCY_KEY_HEADER, parseIdempotencyKey } from '../shared/idempotency-key.ts';
import { expandSearch } from '../shared/search-space.ts';
import { checkTrainParams, checkTrainRequest, type ParamSet } from '../shared/training-request.ts';
import type { ModelCatalog } from './model-catalog.ts';
import { readFileUpload, type UploadKind } from './read-upload.ts';
import type { CheckedParameters } from './request-validator.ts';
import { AuthGate } from './auth-gate.ts';
import type { OwnerCheck } from './owner-check.ts';
import type { AuditTrail } from './audit-trail.ts';

/** A dataset archive: the multipart field `archive`, or the raw zip or tar.gz bytes. */
export const DATASET_UPLOAD: UploadKind = {
  field: 'archive',
  rawTypes: [
    'application/zip',
    'application/x-zip-compressed',
    'application/gzip',
    'application/x-gzip',
    'application/x-compressed-tar',
    'application/x-tar',
    'application/octet-stream',
  ],
  hint:
    'send multipart/form-data with the field "archive", or the zip or tar.gz bytes with content type ' +
    'application/zip, application/gzip or application/octet-stream',
  tooLarge: 'PAYLOAD_TOO_LARGE',
};

/** Time a dataset import may take: the worker decodes every image of the archive. */
const DATASET_IMPORT_TIMEOUT_MS = 10 * 60_000;
/** Largest `POST /api/train` body. */
const MAX_TRAIN_BODY = '64kb';

/** Body of `POST /api/train`: a `TrainHeader` without `deadlineMs` or `key` (see `TRAIN_REQUEST_SCHEMA`; the key comes as `Idempotency-Key`). */
export type TrainRequestBody = Omit<TrainHeader, 'deadlineMs' | 'key'>;

/** What the training routes need of the web app. */
export interface TrainingRoutesContext {
  client: ZerveClient;
  catalog: ModelCatalog;
  options: WebAppOptions;
  /** Runs `work` within the web app's bound of requests in flight (OVERLOADED past it). */
  withSlot: (work: () => Promise<void>) => Promise<void>;
  /** Who may see which dataset and job. */
  owners: OwnerCheck;
  audit: AuditTrail;
  /** The shared experiment store's history, when the web app has one (`--store postgres://…`). */
  storeRuns: () => StoreRuns | undefined;
}

/** The built-in dataset (workers/training/builtin-mnist.ts): everyone's. */
const BUILT_IN_DATASET = 'mnist';

function params(res: Response): CheckedParameters {
  return res.locals.params as CheckedParameters;
}

/**
 * The training API: datasets (`GET|POST /api/datasets`), trainings started as durable jobs
 * (`POST /api/train`, then `/api/jobs/{id}` and its events) and the run store (`GET /api/runs`,
 * `GET /api/runs/{id}`), in front of the training workers' services (shared/training.ts).
 */
export class TrainingRoutes {
  constructor(private readonly context: TrainingRoutesContext) {}

  /** Adds the routes; `check` is the OpenAPI parameter check of an operation. */
  register(app: express.Express, check: (operationId: string) => RequestHandler): void {
    app.get('/api/datasets', check('listDatasets'), this.listDatasets);
    app.post('/api/datasets', check('addDataset'), this.addDataset);
    app.post('/api/train', check('startTraining'), express.json({ limit: MAX_TRAIN_BODY }), this.startTraining);
    app.get('/api/runs', check('listRuns'), this.listRuns);
    app.get('/api/runs/:id', check('getRun'), this.getRun);
  }

  private readonly listDatasets: RequestHandler = async (_req, res) => {
    await this.requireService(DATASETS_LIST);
    const datasets = await clusterDatasets(this.context.client, this.context.options.requestTimeoutMs);
    res.json(await this.context.owners.visible('dataset', datasets, (d) => d.id, AuthGate.principalOf(res)));
  };

  private readonly addDataset: RequestHandler = async (req, res) => {
    const { name, shared } = params(res).query as { name?: string; shared?: boolean };
    const key = parseIdempotencyKey(req.get(IDEMPOTENCY_KEY_HEADER));
    await this.context.withSlot(async () => {
      await this.requireService(DATASETS_ADD);
      const upload = await readFileUpload(req, this.context.options.maxUploadBytes, DATASET_UPLOAD);
      if (upload.bytes === undefined) throw new ZerveError('BAD_REQUEST', `no archive: ${DATASET_UPLOAD.hint}`);
      if (upload.bytes.length === 0) throw new ZerveError('BAD_DATASET', 'the archive is empty');
      const header = { ...(name === undefined ? {} : { name }), ...(key === undefined ? {} : { key }), deadlineMs: DATASET_IMPORT_TIMEOUT_MS };
      // With a key the worker answers a resend with the first summary, so it may go through another broker.
      const summary = await this.context.client.requestJson<DatasetSummary>(DATASETS_ADD, [encodeJson(header), upload.bytes], {
        timeoutMs: DATASET_IMPORT_TIMEOUT_MS,
        retries: 0,
        idempotent: key !== undefined,
      });
      // Deduplicated by hash where it is stored; each uploader is an owner of the one copy.
      await this.context.owners.record('dataset', summary.id, AuthGate.principalOf(res), shared === true);
      await this.context.audit.record(res, 'dataset.add', summary.id, { name: summary.name ?? null, images: summary.images });
      res.status(201).json(summary);
    });
  };

  private readonly startTraining: RequestHandler = async (req, res) => {
    const key = parseIdempotencyKey(req.get(IDEMPOTENCY_KEY_HEADER));
    const request = this.validRequest(req.body);
    const points = this.searchPoints(request);
    await this.context.withSlot(async () => {
      if (!(await this.context.catalog.jobsAvailable())) throw new ZerveError('NO_WORKERS', 'the jobs service is not running');
      await this.requireService(TRAIN_SERVICE);
      const datasets = await this.ask<DatasetSummary[]>(DATASETS_LIST, []);
      const dataset = datasets.find((d) => d.id === request.datasetId) ?? datasets.find((d) => d.name === request.datasetId);
      // datasets.list answers for one worker's data folder; a dataset held on another host is offered as
      // datasets.fetch.<id>, and the training worker fetches it (docs/training.md, "Across hosts").
      if (!dataset && !(await this.context.catalog.offers(datasetFetchService(request.datasetId)))) {
        throw new ZerveError('UNKNOWN_DATASET', `no dataset ${JSON.stringify(request.datasetId)}: add it first`);
      }
      const datasetId = dataset?.id ?? request.datasetId;
      if (datasetId !== BUILT_IN_DATASET) await this.context.owners.requireRead('dataset', datasetId, AuthGate.principalOf(res));
      if (dataset && request.split?.kind === 'explicit' && !dataset.explicitTest) {
        throw new ZerveError('BAD_REQUEST', `split explicit needs a test/ folder, and dataset ${request.datasetId} has none`);
      }
      if (request.backbone !== undefined) await this.context.catalog.requireModel(request.backbone);
      const principal = AuthGate.principalOf(res);
      // The owner travels with the request to the training worker and is kept with the experiment in its run store.
      const header: TrainHeader = { ...request, ...(this.context.owners.enabled ? { owner: principal.userId } : {}) };
      const ticket = await this.context.client.requestJson<JobTicket>(JOBS_SUBMIT, trainingJobFrames(header, key ? { key } : {}), {
        timeoutMs: this.context.options.requestTimeoutMs,
        retries: 0,
        idempotent: key !== undefined,
      });
      await this.context.owners.record('job', ticket.id, principal);
      await this.context.audit.record(res, 'train.start', ticket.id, { dataset: datasetId, runs: points.length });
      const url = `/api/jobs/${encodeURIComponent(ticket.id)}`;
      res.status(202).location(url).json({ id: ticket.id, state: ticket.state, url, eventsUrl: `${url}/events`, runs: points.length });
    });
  };

  private readonly listRuns: RequestHandler = async (_req, res) => {
    const { limit } = params(res).query as { limit?: number };
    const experiments = await this.runs().list(limit);
    const principal = AuthGate.principalOf(res);
    res.json(experiments.filter((e) => this.context.owners.ownsExperiment(e, principal)));
  };

  private readonly getRun: RequestHandler = async (_req, res) => {
    const id = params(res).path.id as string;
    const runs = this.runs();
    const found = await runs.get(id);
    // A run is its experiment's: its owner is read from there.
    const experiment = 'request' in found ? found : await runs.get(found.experimentId);
    if (!this.context.owners.ownsExperiment(experiment as { request: unknown }, AuthGate.principalOf(res))) {
      throw new ZerveError('FORBIDDEN', `run or experiment ${id} is not ${AuthGate.principalOf(res).userName}'s`);
    }
    res.json(found);
  };

  /**
   * Where the run history is read: the shared experiment store when the web app has one (no
   * training worker needs to be up), else every training worker's own store through the broker.
   */
  private runs(): Pick<ClusterRuns, 'list' | 'get'> {
    const stored = this.context.storeRuns();
    if (stored) return stored;
    return { list: async (limit) => { await this.requireService(RUNS_LIST); return new ClusterRuns(this.context.client, this.context.options.requestTimeoutMs).list(limit); },
             get: async (id) => { await this.requireService(RUNS_GET); return new ClusterRuns(this.context.client, this.context.options.requestTimeoutMs).get(id); } };
  }

  /** The body checked against `TrainRequest`, with the rules a schema cannot say. */
  private validRequest(body: unknown): TrainRequestBody {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ZerveError('BAD_REQUEST', 'send the training request as a JSON object, with content-type application/json');
    }
    const request = checkTrainRequest(body);
    if (request.family === 'transfer' && request.backbone === undefined) {
      throw new ZerveError('BAD_REQUEST', 'family transfer needs a backbone (a served squeezenet model)');
    }
    if (request.family === 'mlp' && (request.backbone !== undefined || request.head !== undefined)) {
      throw new ZerveError('BAD_REQUEST', 'backbone and head are for family transfer');
    }
    if (request.search?.mode === 'grid' && request.search.samples !== undefined) {
      throw new ZerveError('BAD_REQUEST', 'samples is for random search; a grid runs every combination');
    }
    return request;
  }

  /** Every configuration the search runs, each checked as hyperparameters (a bad search is a 400 now, not a failed job later). */
  private searchPoints(request: TrainRequestBody): ParamSet[] {
    const points = expandSearch(request.search, request.seed ?? 1);
    for (const point of points) {
      checkTrainParams({ ...request.params, ...point }, `search point ${JSON.stringify(point)}`);
    }
    return points;
  }

  /** Whether a training worker is there: answers NO_WORKERS at once rather than after the deadline. */
  private async requireService(service: string): Promise<void> {
    if (!(await this.context.catalog.offers(service))) {
      throw new ZerveError('NO_WORKERS', `no training worker offers ${service} now`);
    }
  }

  private ask<T>(service: string, body: Buffer[], timeoutMs = this.context.options.requestTimeoutMs): Promise<T> {
    return this.context.client.requestJson<T>(service, body, { timeoutMs, retries: 0 });
  }
}
