/**
 * The training worker process kind (`zerve worker training`): the parts of one training worker put
 * together. Three broker registrations, so one kind of work never starves another:
 * - `train` (capacity 1 by default): one experiment (experiment-service.ts);
 * - `train.run` (capacity `runCapacity`): one search combination (run-service.ts);
 * - control (`datasets.*`, `runs.*`, `train.cancel.<this worker>`, `datasets.fetch.<id>` per dataset
 *   stored here): answered at once, even while training (control-service.ts). A `train` or
 *   `train.run` for a dataset only another worker holds fetches it first (DatasetTransfer).
 * Message bodies: shared/training.ts.
 */
import { randomBytes } from 'node:crypto';
import { ZerveClient } from '../../shared/client.ts';
import { DEFAULT_TRAINING_WORKER_OPTIONS, type TrainingWorkerOptions } from '../../shared/config.ts';
import { curveOptionsOf } from '../../shared/curve-socket-options.ts';
import { ZerveError } from '../../shared/errors.ts';
import { logger as rootLogger, type Logger } from '../../shared/logger.ts';
import { METRICS } from '../../shared/metrics.ts';
import { isAlive } from '../../shared/process-alive.ts';
import { HOSTNAME } from '../../shared/protocol.ts';
import { TRAIN_CANCEL_PREFIX } from '../../shared/training.ts';
import { compileTrainChecks } from '../../shared/training-request.ts';
import { ModelHolder } from '../../shared/model-exchange/model-holder.ts';
import { ModelSync } from '../../shared/model-exchange/model-sync.ts';
import { ModelFetcher } from '../../shared/model-exchange/model-transfer.ts';
import { WorkerMetrics } from '../../shared/worker-metrics.ts';
import { ActiveTrainings } from './active-trainings.ts';
import { BackboneRepository, isBackboneName } from './backbone-repository.ts';
import { loadMnist } from './builtin-mnist.ts';
import { ControlService } from './control-service.ts';
import { DatasetStore } from './dataset-store.ts';
import { DatasetTransfer } from './dataset-transfer.ts';
import { ExperimentService } from './experiment-service.ts';
import { Notifier } from './notifier.ts';
import { PreparedData } from './prepared-data.ts';
import { RequestResolver } from './request-resolver.ts';
import { RunService } from './run-service.ts';
import type { ExperimentStore } from '../../shared/store/experiment-store.ts';
import { openExperimentStore } from '../../shared/store/open-experiment-store.ts';
import { SqliteExperimentStore } from '../../shared/store/sqlite-experiment-store.ts';
import { parseStoreLocation } from '../../shared/store/store-location.ts';

export class TrainingWorker {
  readonly options: TrainingWorkerOptions;
  /** Service that cancels this worker's experiments and runs. */
  readonly cancelService: string;
  /** `zerve_training_experiments_total{state}`; relayed to the broker by the `train` connection, which answers experiments. */
  readonly metrics = new WorkerMetrics();
  private readonly log: Logger;
  private readonly experiments: ExperimentService;
  private readonly runs: RunService;
  private readonly control: ControlService;
  private readonly store: ExperimentStore;
  private readonly notifier: Notifier;
  private readonly client?: ZerveClient;
  /** With a broker: holds this worker's exported models and publishes them to the cluster. */
  private readonly models?: ModelHolder;
  /** With a broker: fetches the backbones the cluster serves into this worker's models folder. */
  private readonly backboneSync?: ModelSync;
  private closing?: Promise<void>;

  /**
   * `store`: the experiment store, opened by `TrainingWorker.open`; without it the SQLite store of
   * `options.store` (default `runs.sqlite` in `data`) is opened here.
   */
  constructor(options: Partial<TrainingWorkerOptions> = {}, log: Logger = rootLogger, store?: ExperimentStore) {
    this.options = { ...DEFAULT_TRAINING_WORKER_OPTIONS, ...options };
    const { runConcurrency, runRetries, runCapacity } = this.options;
    if (!(Number.isInteger(runConcurrency) && runConcurrency >= 1 && Number.isInteger(runRetries) && runRetries >= 0 && Number.isInteger(runCapacity) && runCapacity >= 1)) {
      throw new ZerveError('BAD_CONFIG', 'runConcurrency and runCapacity must be positive integers, runRetries not negative');
    }
    this.log = log.child({ component: 'training-worker' });
    this.cancelService = `${TRAIN_CANCEL_PREFIX}${HOSTNAME}-${process.pid}-${randomBytes(3).toString('hex')}`;
    const datasets = new DatasetStore(this.options, this.log);
    if (store) this.store = store;
    else {
      const location = parseStoreLocation(this.options.store, this.options.data);
      if (location.kind !== 'sqlite') throw new ZerveError('BAD_REQUEST', 'a training worker on a postgres:// store is made with TrainingWorker.open');
      this.store = new SqliteExperimentStore(location.folder);
    }
    this.notifier = new Notifier(this.options, this.log);
    if (this.options.broker !== '') {
      this.client = new ZerveClient({ broker: this.options.broker, ...curveOptionsOf(this.options) });
      this.models = new ModelHolder({ ...this.options, kind: 'models' }, this.log);
      const fetcher = new ModelFetcher(this.options.models, this.models.client, this.options, this.log);
      this.backboneSync = new ModelSync(this.models, fetcher, { ...this.options, accept: isBackboneName }, this.log);
    }
    const backbones = new BackboneRepository(this.options.models, this.backboneSync && (() => this.backboneSync!.caughtUp()));
    // Fetches datasets this worker lacks from the workers holding them; serves ours.
    const transfer = new DatasetTransfer(datasets, this.client, {}, this.log);
    const common = {
      options: this.options,
      cancelService: this.cancelService,
      active: new ActiveTrainings(),
      requests: new RequestResolver(this.store, backbones, transfer, this.notifier.emailEnabled),
      prepared: new PreparedData(this.options, backbones, this.log),
      transfer,
    };
    this.experiments = new ExperimentService(
      {
        ...common,
        store: this.store,
        notifier: this.notifier,
        experiments: this.metrics.table(METRICS.trainingExperiments),
        ...(this.client ? { client: this.client } : {}),
        ...(this.models ? { models: this.models } : {}),
      },
      this.log,
    );
    this.runs = new RunService(common, this.log);
    this.control = new ControlService({ ...common, datasets, store: this.store }, this.log);
    transfer.on('fetched', (id: string) => this.control.offerDatasets(id));
    this.experiments.connection.reportMetrics(this.metrics);
  }

  /** Opens the experiment store `options.store` names (a PostgreSQL one migrated), then makes the worker. */
  static async open(options: Partial<TrainingWorkerOptions> = {}, log: Logger = rootLogger): Promise<TrainingWorker> {
    const { store = '', data = DEFAULT_TRAINING_WORKER_OPTIONS.data } = options;
    const opened = await openExperimentStore(store, data, log.child({ component: 'training-worker' }));
    try {
      return new TrainingWorker(options, log, opened);
    } catch (err) {
      await opened.close();
      throw err;
    }
  }

  start(): void {
    this.store
      .failAbandoned(HOSTNAME, isAlive)
      .then((abandoned) => {
        if (abandoned.length > 0) this.log.warn({ experiments: abandoned }, 'marked failed: experiments whose training worker died');
      })
      .catch((err: unknown) => this.log.error({ err }, 'cannot mark the experiments of dead training workers failed'));
    // Parsing the built-in digits and compiling the request checks block the event loop for a moment:
    // do it before heartbeats start.
    loadMnist();
    compileTrainChecks();
    this.control.connection.start();
    this.control.offerStoredDatasets().catch((err: unknown) => this.log.error({ err }, 'cannot list the stored datasets'));
    this.runs.connection.start();
    this.experiments.connection.start();
    // The sync starts once the holder has read the folder, so backbones already there are not fetched again.
    this.models
      ?.start()
      .catch((err: unknown) => this.log.error({ err }, 'cannot offer the exported models'))
      .finally(() => this.backboneSync?.start());
  }

  /** Stops taking work, finishes running requests, closes the store; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const results = await Promise.allSettled([this.experiments.connection.close(), this.runs.connection.close()]);
      await this.backboneSync?.close();
      results.push(...(await Promise.allSettled([this.control.connection.close(), this.client?.close(), this.notifier.close(), this.models?.close()])));
      await this.store.close().catch((err: unknown) => this.log.error({ err }, 'closing the experiment store failed'));
      for (const r of results) if (r.status === 'rejected') this.log.error({ err: r.reason }, 'error while closing');
    })();
    return this.closing;
  }
}
