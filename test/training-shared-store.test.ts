import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { encodeJson } from '../shared/messages.ts';
import { HOSTNAME } from '../shared/protocol.ts';
import { openExperimentStore } from '../shared/store/open-experiment-store.ts';
import { DATASETS_ADD, TRAIN_SERVICE, requestTraining, type DatasetSummary, type RunRecord } from '../shared/training.ts';
import { makePng, makeZip } from './fixtures/training-archives.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';
import { runCli, spawnWorker, startBroker, tempDir, type CliProcess } from './helpers/cluster.ts';
import { TestPostgres, skipUnlessPostgres } from './helpers/postgres.ts';

async function colourZip(): Promise<Buffer> {
  const entries = [];
  for (let i = 0; i < 8; i++) {
    entries.push({ name: `red/${i}.png`, data: await makePng(i, [220, 30, 30], 8) });
    entries.push({ name: `blue/${i}.png`, data: await makePng(100 + i, [30, 30, 220], 8) });
  }
  return makeZip(entries);
}

describe('a training worker on a shared PostgreSQL store', function () {
  this.timeout(90_000);
  let server: TestPostgres | undefined;
  let dir: { path: string; remove: () => Promise<void> };
  let broker: Broker;
  let client: ZerveClient;
  let worker: CliProcess | undefined;

  before(async function () {
    skipUnlessPostgres(this);
    server = await TestPostgres.start();
  });
  after(() => server?.close());
  beforeEach(async () => {
    dir = await tempDir('zerve-training-store-');
    broker = await startBroker();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 60_000 });
  });
  afterEach(async () => {
    await client.close();
    await worker?.kill('SIGTERM');
    worker = undefined;
    await broker.close();
    await dir.remove();
  });

  it('writes its experiment, runs and epochs and its dataset index there, and history stays readable once it has stopped', async () => {
    worker = await spawnWorker(
      broker,
      ['training', '--data', join(dir.path, 'data'), '--models', join(dir.path, 'models'), '--store', server!.url],
      (w) => w.services.includes(TRAIN_SERVICE),
    );
    const dataset = await client.requestJson<DatasetSummary>(DATASETS_ADD, [encodeJson({ name: 'colours' }), await colourZip()]);
    const result = await requestTraining(client, { datasetId: 'colours', family: 'mlp', epochs: 2 });
    await worker.kill('SIGTERM');
    worker = undefined;

    const store = await openExperimentStore(server!.url, '.', testLogger);
    try {
      assert.equal(await store.datasetByName('colours'), dataset.id, 'the name resolves from the store');
      const [holder] = await store.datasetHolders(dataset.id);
      assert.equal(holder?.host, HOSTNAME);
      assert.equal(holder?.images, 16);
      const [experiment] = await store.summaries(5);
      assert.equal(experiment?.id, result.experimentId);
      assert.equal(experiment?.status, 'succeeded');
      const run = (await store.run(result.best.runId)) as RunRecord;
      assert.ok((run.epochs?.length ?? 0) >= 1, 'epochs were written');
    } finally {
      await store.close();
    }
    const listed = await runCli(['runs', 'list', '--store', server!.url, '--format', 'json']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok((JSON.parse(listed.stdout) as RunRecord[]).some((r) => r.experimentId === result.experimentId), 'zerve runs list shows it with the worker stopped');
  });
});
