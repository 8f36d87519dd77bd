import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { POSTGRES_EXPERIMENT_MIGRATIONS } from '../shared/store/postgres-experiment-store.ts';
import { migratePostgres } from '../shared/store/schema-migrations.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExperimentStore } from '../shared/store/experiment-store.ts';
import { openExperimentStore } from '../shared/store/open-experiment-store.ts';
import { StoreRuns } from '../shared/store/store-runs.ts';
import type { ExperimentDetail, RunRecord } from '../shared/training.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';
import type { Broker } from '../broker/broker.ts';
import { WebApp } from '../webapp/web-app.ts';
import { runCli, startBroker } from './helpers/cluster.ts';
import { TestPostgres, skipUnlessPostgres } from './helpers/postgres.ts';

const epoch = (n: number) => ({ phase: 'run' as const, epoch: n, loss: 1 / n, valAccuracy: 0.5 + n / 100, valLoss: 1 / n, elapsedMs: n * 10 });

/** The same behaviour, said once, for each backend. */
for (const backend of ['sqlite', 'postgres'] as const) {
  describe(`experiment store (${backend})`, () => {
    let server: TestPostgres | undefined;
    let location: string;
    let dir: string;
    let databases = 0;
    const opened: ExperimentStore[] = [];
    let store: ExperimentStore;
    const open = async (): Promise<ExperimentStore> => {
      const s = await openExperimentStore(location, dir, testLogger);
      opened.push(s);
      return s;
    };

    before(async function () {
      if (backend !== 'postgres') return;
      skipUnlessPostgres(this);
      this.timeout(30_000);
      server = await TestPostgres.start();
    });
    after(() => server?.close());
    beforeEach(async () => {
      dir = mkdtempSync(join(tmpdir(), 'zerve-experiments-'));
      location = server ? await server.createDatabase(`experiments${++databases}`) : '';
      store = await open();
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
      rmSync(dir, { recursive: true, force: true });
    });

    const record = async (s: ExperimentStore, id: string, host = 'host-a') => {
      await s.startExperiment({ id, datasetId: 'd'.repeat(64), request: { family: 'mlp' }, seed: 7, host, pid: process.pid });
      for (const i of [1, 2]) {
        const runId = `${id}-${i}`;
        await s.startRun({ id: runId, experimentId: id, index: i, params: { lr: i / 10 } });
        // Not awaited one by one, as the training worker writes them: they land in order anyway.
        await Promise.all([1, 2, 3].map((n) => s.addEpoch(runId, epoch(n))));
        await s.finishRun(runId, { status: 'succeeded', valAccuracy: 0.9 + i / 100, valLoss: 0.1, bestEpoch: 3, epochsRun: 3, durationMs: 30, host });
      }
      await s.finishExperiment(id, { status: 'succeeded', durationMs: 100, bestRunId: `${id}-2`, test: { accuracy: 0.93 }, modelName: 'digits', modelVersion: '1' });
    };

    it('keeps an experiment, its runs and their epochs in order, and the best run carries the test metrics', async () => {
      await record(store, 'e1');
      const run = (await store.detail('e1-2')) as RunRecord;
      assert.deepEqual(run.epochs?.map((e) => e.epoch), [1, 2, 3]);
      assert.equal(run.params.lr, 0.2);
      assert.deepEqual(run.test, { accuracy: 0.93 });
      assert.equal(run.modelVersion, '1');
      assert.equal(((await store.detail('e1-1')) as RunRecord).test, undefined);
      const experiment = (await store.detail('e1')) as ExperimentDetail;
      assert.equal(experiment.status, 'succeeded');
      assert.deepEqual(experiment.runs.map((r) => r.id), ['e1-1', 'e1-2']);
      assert.equal(experiment.runs[0]!.epochs?.length, 3);
      assert.equal(await store.detail('nope'), undefined);
    });

    it('lists experiments newest first, each with its runs', async () => {
      await record(store, 'e1');
      await new Promise((resolve) => setTimeout(resolve, 5)); // started_at has millisecond resolution
      await record(store, 'e2');
      const list = await store.summaries(10);
      assert.deepEqual(list.map((e) => e.id), ['e2', 'e1']);
      assert.deepEqual(list[0]!.runs.map((r) => r.index), [1, 2]);
      assert.deepEqual((await store.summaries(1)).map((e) => e.id), ['e2']);
      assert.deepEqual((await store.runs({ limit: 3 })).map((r) => r.id), ['e2-1', 'e2-2', 'e1-1']);
    });

    it('ends the runs still running with a failed experiment', async () => {
      await store.startExperiment({ id: 'e3', datasetId: 'd', request: {}, seed: 1, host: 'h', pid: process.pid });
      await store.startRun({ id: 'e3-1', experimentId: 'e3', index: 1, params: {} });
      await store.finishExperiment('e3', { status: 'failed', error: 'TIMEOUT: slow' });
      assert.equal((await store.run('e3-1'))?.status, 'failed');
      assert.equal((await store.experiment('e3'))?.error, 'TIMEOUT: slow');
    });

    it('marks failed the running experiments of a dead worker on its host, and only those', async () => {
      await store.startExperiment({ id: 'dead', datasetId: 'd', request: {}, seed: 1, host: 'h1', pid: 1_000_001 });
      await store.startExperiment({ id: 'alive', datasetId: 'd', request: {}, seed: 1, host: 'h1', pid: process.pid });
      await store.startExperiment({ id: 'elsewhere', datasetId: 'd', request: {}, seed: 1, host: 'h2', pid: 1_000_001 });
      assert.deepEqual(await store.failAbandoned('h1', (pid) => pid === process.pid), ['dead']);
      assert.equal((await store.experiment('dead'))?.status, 'failed');
      assert.equal((await store.experiment('alive'))?.status, 'running');
      assert.equal((await store.experiment('elsewhere'))?.status, 'running');
    });

    it('names datasets, the newest under a name winning', async () => {
      await store.nameDataset('a'.repeat(64), 'cats');
      await new Promise((resolve) => setTimeout(resolve, 5));
      await store.nameDataset('b'.repeat(64), 'cats');
      assert.equal(await store.datasetName('a'.repeat(64)), 'cats');
      assert.equal(await store.datasetByName('cats'), 'b'.repeat(64));
      assert.equal(await store.datasetByName('dogs'), undefined);
    });

    it('records where dataset bytes are held, once per host', async () => {
      const id = 'c'.repeat(64);
      await store.addDatasetHolder({ datasetId: id, host: 'host-a', images: 40, bytes: 12_345 });
      await new Promise((resolve) => setTimeout(resolve, 5));
      await store.addDatasetHolder({ datasetId: id, host: 'host-b', images: 40, bytes: 12_345 });
      await store.addDatasetHolder({ datasetId: id, host: 'host-a', images: 40, bytes: 12_345 });
      const holders = await store.datasetHolders(id);
      assert.deepEqual(holders.map((h) => [h.host, h.images, h.bytes]), [['host-a', 40, 12_345], ['host-b', 40, 12_345]]);
      assert.deepEqual(await store.datasetHolders('e'.repeat(64)), []);
    });

    it('answers run history from the store, UNKNOWN_RUN for an unknown id', async () => {
      await record(store, 'e1');
      const history = new StoreRuns(store);
      assert.deepEqual((await history.list(5)).map((e) => e.id), ['e1']);
      await assert.rejects(history.get('e404'), (err: { code?: string }) => err.code === 'UNKNOWN_RUN');
    });
  });
}

describe('experiment store shared by two writers (postgres)', () => {
  let server: TestPostgres | undefined;
  const opened: ExperimentStore[] = [];
  before(async function () {
    skipUnlessPostgres(this);
    this.timeout(30_000);
    server = await TestPostgres.start();
  });
  after(() => server?.close());
  afterEach(() => Promise.all(opened.splice(0).map((s) => s.close())));

  it("shows both workers' experiments to a third reader once both writers have closed", async () => {
    const open = async () => {
      const s = await openExperimentStore(server!.url, '.', testLogger);
      opened.push(s);
      return s;
    };
    const [a, b] = await Promise.all([open(), open()]); // two processes migrating at once: once
    await a.startExperiment({ id: 'ea', datasetId: 'd', request: {}, seed: 1, host: 'host-a', pid: 1 });
    await b.startExperiment({ id: 'eb', datasetId: 'd', request: {}, seed: 1, host: 'host-b', pid: 2 });
    await Promise.all([a.close(), b.close()]);
    const reader = await open();
    assert.deepEqual(new Set((await reader.summaries(10)).map((e) => `${e.id}@${e.host}`)), new Set(['ea@host-a', 'eb@host-b']));
  });
});

describe('run history read from a shared PostgreSQL store, with no training worker up', function () {
  this.timeout(60_000);
  let server: TestPostgres | undefined;
  let broker: Broker | undefined;
  let web: WebApp | undefined;
  before(async function () {
    skipUnlessPostgres(this);
    server = await TestPostgres.start();
    const writer = await openExperimentStore(server.url, '.', testLogger);
    try {
      await writer.startExperiment({ id: 'e1', datasetId: 'd', request: {}, seed: 1, host: 'gone-host', pid: 1 });
      await writer.startRun({ id: 'e1-1', experimentId: 'e1', index: 1, params: { lr: 0.1 } });
      await writer.addEpoch('e1-1', epoch(1));
      await writer.finishRun('e1-1', { status: 'succeeded', valAccuracy: 0.9, valLoss: 0.1, bestEpoch: 1, epochsRun: 1, durationMs: 10 });
      await writer.finishExperiment('e1', { status: 'succeeded', durationMs: 20, bestRunId: 'e1-1', test: { accuracy: 0.9 } });
    } finally {
      await writer.close(); // the worker that wrote it is gone
    }
    broker = await startBroker();
  });
  after(async () => {
    await web?.close();
    await broker?.close();
    await server?.close();
  });

  it('answers GET /api/runs and /api/runs/{id} from the store, 404 UNKNOWN_RUN for an unknown id', async () => {
    web = new WebApp({ broker: broker!.frontendEndpoint, http: 0, store: server!.url }, testLogger);
    const url = await web.start();
    const list = (await (await fetch(new URL('/api/runs', url))).json()) as { id: string; host: string; runs: unknown[] }[];
    assert.deepEqual(list.map((e) => [e.id, e.host, e.runs.length]), [['e1', 'gone-host', 1]]);
    const run = (await (await fetch(new URL('/api/runs/e1-1', url))).json()) as RunRecord;
    assert.deepEqual(run.epochs?.map((e) => e.epoch), [1]);
    const missing = await fetch(new URL('/api/runs/e404', url));
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'UNKNOWN_RUN');
  });

  it('lists and shows them with zerve runs --store (a real process)', async () => {
    const listed = await runCli(['runs', 'list', '--store', server!.url, '--format', 'json']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual((JSON.parse(listed.stdout) as RunRecord[]).map((r) => r.id), ['e1-1']);
    const shown = await runCli(['runs', 'show', 'e1', '--store', server!.url]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal((JSON.parse(shown.stdout) as ExperimentDetail).runs[0]!.id, 'e1-1');
  });
});

describe('experiment store upgrades', () => {
  let dir: string;
  let server: TestPostgres | undefined;
  const opened: ExperimentStore[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'zerve-runs-upgrade-'));
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()));
    rmSync(dir, { recursive: true, force: true });
  });
  after(() => server?.close());

  it('opens a runs.sqlite the previous release wrote, losing nothing, and adds the dataset index', async () => {
    const old = new Database(join(dir, 'runs.sqlite'));
    old.exec(readFileSync(fileURLToPath(new URL('./fixtures/runs-store-previous-schema.sql', import.meta.url)), 'utf8'));
    old.close();
    const readOnly = await openExperimentStore(`sqlite:${dir}`, dir, testLogger, { readonly: true });
    opened.push(readOnly);
    assert.deepEqual(await readOnly.datasetHolders('f'.repeat(64)), [], 'read-only, an old file answers an empty index');
    const store = await openExperimentStore(`sqlite:${dir}`, dir, testLogger);
    opened.push(store);
    const run = (await store.detail('eold-1')) as RunRecord;
    assert.deepEqual(run.epochs?.map((e) => e.valAccuracy), [0.9, 0.96]);
    assert.deepEqual(run.test, { accuracy: 0.97 });
    const [experiment] = await store.summaries(5);
    assert.equal(experiment?.host, 'old-host');
    assert.equal(await store.datasetByName('photos'), 'f'.repeat(64));
    await store.addDatasetHolder({ datasetId: 'f'.repeat(64), host: 'new-host', images: 3, bytes: 300 });
    assert.deepEqual((await store.datasetHolders('f'.repeat(64))).map((h) => h.host), ['new-host']);
  });

  it('migrates a PostgreSQL database at the first schema version to the newest, once, losing nothing', async function () {
    skipUnlessPostgres(this);
    this.timeout(30_000);
    server = await TestPostgres.start();
    const pool = new pg.Pool({ connectionString: server.url });
    try {
      await migratePostgres(pool, 'experiments', POSTGRES_EXPERIMENT_MIGRATIONS.slice(0, 1));
      await pool.query(
        `INSERT INTO experiments (id, dataset_id, request, seed, code_version, status, started_at, host, pid) VALUES ('ev1', 'd', '{}', 1, '1', 'running', '2026-12-01T00:00:00Z', 'h', 1)`,
      );
      const [a, b] = await Promise.all([openExperimentStore(server.url, '.', testLogger), openExperimentStore(server.url, '.', testLogger)]);
      opened.push(a, b);
      assert.equal((await a.experiment('ev1'))?.status, 'running');
      const { rows } = await pool.query<{ version: number }>(`SELECT version FROM zerve_schema WHERE component = 'experiments'`);
      assert.deepEqual(rows.map((r) => r.version), [POSTGRES_EXPERIMENT_MIGRATIONS.length]);
      await b.addDatasetHolder({ datasetId: 'd', host: 'h', images: 1, bytes: 1 });
      assert.equal((await a.datasetHolders('d')).length, 1);
    } finally {
      await pool.end();
    }
  });
});
