/**
 * The control services of a training worker, answered at once even while it trains:
 * `datasets.add|list|get`, `runs.list|get` (its run store), the same under its own per-worker
 * names, `train.cancel.<this worker>`, and `datasets.fetch.<id>` for every dataset stored here.
 */
import { ZerveError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/logger.ts';
import { decodeHeader, encodeJson } from '../../shared/messages.ts';
import { basePerWorkerService, PER_WORKER_SERVICES, perWorkerService } from '../../shared/per-worker-services.ts';
import {
  DATASETS_ADD,
  DATASETS_FETCH_PREFIX,
  DATASETS_GET,
  DATASETS_LIST,
  datasetFetchService,
  RUNS_GET,
  RUNS_LIST,
  TRAIN_CANCEL_PREFIX,
  type DatasetSummary,
} from '../../shared/training.ts';
import type { TrainingWorkerOptions } from '../../shared/config.ts';
import { WorkerConnection, type RequestContext } from '../../shared/worker-connection.ts';
import type { ActiveTrainings } from './active-trainings.ts';
import { MNIST_DATASET_ID } from './builtin-mnist.ts';
import type { DatasetManifest, DatasetStore } from './dataset-store.ts';
import type { DatasetTransfer } from './dataset-transfer.ts';
import type { RequestResolver } from './request-resolver.ts';
import type { ExperimentStore } from '../../shared/store/experiment-store.ts';
import { ANONYMOUS_USER, HOSTNAME, type CallerIdentity } from '../../shared/protocol.ts';
import { isIdempotencyKey } from '../../shared/idempotency-key.ts';
import { KeyedAnswers } from '../../shared/keyed-answers.ts';

export interface ControlServiceParts {
  options: TrainingWorkerOptions;
  /** `train.cancel.<host>-<pid>-<tag>`: the service that cancels this worker's experiments and runs. */
  cancelService: string;
  active: ActiveTrainings;
  requests: RequestResolver;
  datasets: DatasetStore;
  store: ExperimentStore;
  transfer: DatasetTransfer;
}

/** The control registration (capacity 4) and its handler. */
export class ControlService {
  readonly connection: WorkerConnection;
  /** `<host>-<pid>-<tag>`: the suffix of this worker's own service names. */
  private readonly workerName: string;
  /** Control services besides one `datasets.fetch.<id>` per dataset held. */
  private readonly services: string[];
  /** Datasets whose fetch service this worker offers. */
  private readonly offered = new Set<string>();
  /** Answers of keyed `datasets.add`s, so a resend (through another broker, after a lost reply) does not import again. */
  private readonly added = new KeyedAnswers<Buffer[]>();
  private readonly log: Logger;

  constructor(private readonly parts: ControlServiceParts, log: Logger) {
    this.log = log;
    // Names of its own too, so a client can ask every host's run store and datasets (shared/per-worker-services.ts).
    this.workerName = parts.cancelService.slice(TRAIN_CANCEL_PREFIX.length);
    const own = PER_WORKER_SERVICES.map((base) => perWorkerService(base, this.workerName));
    this.services = [DATASETS_ADD, DATASETS_LIST, DATASETS_GET, RUNS_LIST, RUNS_GET, ...own, parts.cancelService];
    this.connection = new WorkerConnection(this.services, (body, ctx) => this.handle(body, ctx), { ...parts.options, kind: 'training', capacity: 4, caller: true }, log);
  }

  /** Offers `datasets.fetch.<id>` (one READY for all), so the broker sends other workers' fetches of them here. */
  offerDatasets(...ids: string[]): void {
    const fresh = ids.filter((id) => id !== MNIST_DATASET_ID && !this.offered.has(id));
    if (fresh.length === 0) return;
    for (const id of fresh) this.offered.add(id);
    this.connection.setServices([...this.services, ...[...this.offered].map(datasetFetchService)]);
    void this.recordHolding(fresh);
  }

  /** Records in the dataset index that this host holds these datasets' bytes; failures are logged. */
  private async recordHolding(ids: string[]): Promise<void> {
    for (const id of ids) {
      try {
        const manifest = await this.parts.datasets.manifest(id);
        await this.parts.store.addDatasetHolder({ datasetId: id, host: HOSTNAME, images: manifest.images.length, bytes: manifest.totalBytes });
      } catch (err) {
        this.log.warn({ err, datasetId: id }, 'cannot record the dataset in the dataset index');
      }
    }
  }

  async offerStoredDatasets(): Promise<void> {
    this.offerDatasets(...(await this.parts.datasets.list()));
  }

  private async handle(body: Buffer[], ctx: RequestContext): Promise<Buffer[]> {
    const base = basePerWorkerService(ctx.service, this.workerName);
    if (base) return this.handle(body, { ...ctx, service: base });
    switch (ctx.service) {
      case DATASETS_ADD: {
        const header = decodeHeader(body[0]);
        const archive = body[1];
        if (!archive || archive.length === 0) throw new ZerveError('BAD_DATASET', 'datasets.add needs the archive bytes (zip or tar.gz) as frame 2');
        if (header.name !== undefined && (typeof header.name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(header.name))) {
          throw new ZerveError('BAD_REQUEST', 'name must be 1 to 64 letters, digits, dots, dashes or underscores');
        }
        if (header.key !== undefined && !isIdempotencyKey(header.key)) {
          throw new ZerveError('BAD_REQUEST', 'key must be 1 to 128 printable ASCII characters without spaces');
        }
        return this.added.run(header.key, () => this.addDataset(archive, header.name as string | undefined));
      }
      case DATASETS_LIST: {
        const ids = await this.parts.datasets.list();
        const summaries = await Promise.all(ids.map(async (id) => this.summary(await this.parts.datasets.manifest(id), false)));
        return [encodeJson(summaries)];
      }
      case DATASETS_GET: {
        const { id } = decodeHeader(body[0]);
        if (typeof id !== 'string') throw new ZerveError('BAD_REQUEST', 'datasets.get needs {"id"}');
        const manifest = await this.parts.datasets.manifest(await this.parts.requests.datasetId(id));
        // The built-in mnist lists 10,000 images; a summary is what anyone wants from it.
        return [encodeJson(manifest.id === MNIST_DATASET_ID ? await this.summary(manifest) : { ...manifest, name: await this.parts.store.datasetName(manifest.id) })];
      }
      case RUNS_LIST: {
        const { limit = 50 } = decodeHeader(body[0]);
        if (!(Number.isInteger(limit) && (limit as number) >= 1 && (limit as number) <= 1000)) throw new ZerveError('BAD_REQUEST', 'limit must be an integer from 1 to 1000');
        const summaries = await this.parts.store.summaries(limit as number);
        return [encodeJson(summaries.filter((e) => mayReadExperiment(e, ctx.caller)))];
      }
      case RUNS_GET: {
        const { id } = decodeHeader(body[0]);
        if (typeof id !== 'string') throw new ZerveError('BAD_REQUEST', 'runs.get needs {"id"}');
        const found = await this.parts.store.detail(id);
        if (!found) throw new ZerveError('UNKNOWN_RUN', `no run or experiment ${id}`);
        // A run is its experiment's: its owner is read from there.
        const experiment = 'request' in found ? found : await this.parts.store.detail(found.experimentId);
        if (experiment && 'request' in experiment && !mayReadExperiment(experiment, ctx.caller)) {
          throw new ZerveError('FORBIDDEN', `run or experiment ${id} is another user's`);
        }
        return [encodeJson(found)];
      }
      case this.parts.cancelService: {
        const { experimentId } = decodeHeader(body[0]);
        const canceled = typeof experimentId === 'string' && this.parts.active.cancel(experimentId);
        if (canceled) this.log.info({ experimentId }, 'canceled');
        return [encodeJson({ canceled })];
      }
      default:
        if (ctx.service.startsWith(DATASETS_FETCH_PREFIX)) return this.parts.transfer.serve(ctx.service.slice(DATASETS_FETCH_PREFIX.length), body);
        throw new ZerveError('UNKNOWN_SERVICE', `no service ${ctx.service} here`);
    }
  }

  private async addDataset(archive: Buffer, name: string | undefined): Promise<Buffer[]> {
    const manifest = await this.parts.datasets.importArchive(archive);
    this.offerDatasets(manifest.id);
    if (name !== undefined) await this.parts.store.nameDataset(manifest.id, name);
    this.log.info({ datasetId: manifest.id, name, images: manifest.images.length, skipped: manifest.skipped.length }, 'dataset added');
    return [encodeJson(await this.summary(manifest))];
  }

  private async summary(manifest: DatasetManifest, withSkipped = true): Promise<DatasetSummary> {
    const name = manifest.id === MNIST_DATASET_ID ? 'mnist' : await this.parts.store.datasetName(manifest.id);
    return {
      id: manifest.id,
      ...(name ? { name } : {}),
      source: manifest.source,
      classes: manifest.classes,
      counts: manifest.counts,
      images: manifest.images.length,
      skipped: withSkipped ? manifest.skipped : [],
      explicitTest: manifest.explicitTest,
    };
  }
}

/**
 * Whether a caller the broker identified may read an experiment (and its runs): its `request.owner`
 * is theirs, it has none, or they are an admin. An anonymous caller reads all, as before: the web app,
 * unless its key is trusted in the broker's `--client-users`, asks as one and filters by itself.
 */
function mayReadExperiment(experiment: { request: unknown }, caller: CallerIdentity): boolean {
  if (caller.user === ANONYMOUS_USER || caller.role === 'admin') return true;
  const owner = (experiment.request as { owner?: unknown } | null)?.owner;
  return owner === undefined || owner === caller.user;
}
