import assert from 'node:assert/strict';
import { access, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { ZerveError, type ErrorCode } from '../shared/errors.ts';
import { decodeReply, encodeJson, type WorkerInfo } from '../shared/messages.ts';
import { DATASETS_ADD, datasetFetchService, requestTraining, TRAIN_RUN_SERVICE, TRAIN_SERVICE, type DatasetFetchReply, type DatasetSummary, type TrainHeader } from '../shared/training.ts';
import { DatasetStore, type DatasetManifest } from '../workers/training/dataset-store.ts';
import { DatasetTransfer, type FetchProgress } from '../workers/training/dataset-transfer.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { makePng, makeZip } from './fixtures/training-archives.ts';
import { nextWorker, spawnWorker, startBroker, tempDir, TEST_ENV, TEST_HEARTBEAT_MS, type CliProcess } from './helpers/cluster.ts';

const isCode = (code: ErrorCode) => (err: unknown) => err instanceof ZerveError && err.code === code;
const exists = (path: string) => access(path).then(() => true, () => false);
const NOBODY = '0'.repeat(64);
/** Info level, so the tests can count the workers' 'dataset fetched' log lines. */
const INFO_ENV = { ...TEST_ENV, ZERVE_LOG_LEVEL: 'info' };

/** Two classes of tiny PNGs: enough for a holdout test split and a validation split; `seed` varies the bytes. */
async function colourZip(seed = 0): Promise<Buffer> {
  const entries = [];
  for (let i = 0; i < 8; i++) {
    entries.push({ name: `red/${i}.png`, data: await makePng(seed + i, [220, 30, 30], 8) });
    entries.push({ name: `blue/${i}.png`, data: await makePng(seed + 100 + i, [30, 30, 220], 8) });
  }
  return makeZip(entries);
}

const manifestOf = async (data: string, id: string) => JSON.parse(await readFile(join(data, 'datasets', id, 'manifest.json'), 'utf8')) as DatasetManifest;

/** Lines of a worker's pino output with this message and dataset id. */
const logLines = (worker: CliProcess, msg: string, datasetId: string) =>
  worker.stdout.split('\n').filter((line) => line.includes(`"msg":"${msg}"`) && line.includes(datasetId)).length;

/** Resolves once the worker process `pid` offers every one of `services` (over all its connections). */
async function offering(broker: Broker, client: ZerveClient, pid: number, services: string[]): Promise<void> {
  let changed = () => {};
  const listener = (w: WorkerInfo) => {
    if (w.pid === pid) changed();
  };
  broker.on('worker-ready', listener);
  try {
    for (;;) {
      // Armed before looking, so a READY between the look and the wait is not missed.
      const next = new Promise<void>((resolve) => (changed = resolve));
      const offered = new Set((await client.workers()).filter((w) => w.pid === pid).flatMap((w) => w.services));
      if (services.every((s) => offered.has(s))) return;
      await next;
    }
  } finally {
    broker.off('worker-ready', listener);
  }
}

describe('training dataset fetch between training workers', function () {
  this.timeout(90_000);
  let zips: Buffer[];
  let dir: { path: string; remove: () => Promise<void> };
  let broker: Broker;
  let client: ZerveClient;
  let workers: CliProcess[];
  let a: CliProcess;
  let dataA: string;
  let models: string;
  let datasetId: string;
  let otherId: string;

  before(async () => {
    zips = [await colourZip(0), await colourZip(1000)];
  });

  beforeEach(async () => {
    dir = await tempDir('zerve-dataset-fetch-');
    dataA = join(dir.path, 'dataA');
    models = join(dir.path, 'models');
    broker = await startBroker();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 60_000 });
    workers = [];
    a = await spawnWorker(broker, ['training', '--data', dataA, '--models', models, '--broker', broker.frontendEndpoint], (w) => w.services.includes(TRAIN_SERVICE), INFO_ENV);
    workers.push(a);
    // Only A is up, so datasets.add lands there; its fetch service is offered before the reply.
    const add = (zip: Buffer) => client.requestJson<DatasetSummary>(DATASETS_ADD, [encodeJson({}), zip]);
    [datasetId, otherId] = [(await add(zips[0]!)).id, (await add(zips[1]!)).id];
    assert.equal(await client.hasService(datasetFetchService(datasetId)), true);
    assert.equal(await client.hasService(datasetFetchService(otherId)), true);
  });

  afterEach(async () => {
    await client.close();
    await Promise.all(workers.map((w) => w.kill('SIGTERM')));
    await broker.close();
    await dir.remove();
  });

  it('fetches a dataset once, for a train or a train.run on a worker without it', async () => {
    const dataB = join(dir.path, 'dataB');
    const b = await spawnWorker(broker, ['training', '--data', dataB, '--models', models, '--broker', broker.frontendEndpoint], (w) => w.services.includes(TRAIN_SERVICE), INFO_ENV);
    workers.push(b);
    await Promise.all([a, b].map((w) => offering(broker, client, w.pid, [TRAIN_SERVICE, TRAIN_RUN_SERVICE])));
    const request = (id: string, seed = 1): TrainHeader => ({
      datasetId: id,
      family: 'mlp',
      pixels: { width: 8, height: 8, channels: 3 },
      epochs: 2,
      params: { hidden: 8 },
      search: { mode: 'grid', params: ['learningRate=0.01,0.03'] },
      seed,
    });
    /** Trains; answers the result and the pid of the worker that orchestrated. */
    const train = async (header: TrainHeader) => {
      let orchestrator = 0;
      const result = await requestTraining(client, header, { onProgress: (m) => void (m.type === 'started' && (orchestrator = m.pid)) });
      assert.deepEqual(new Set(result.runs.map((r) => r.pid)), new Set([a.pid, b.pid]), 'runs on both workers');
      return { result, orchestrator };
    };
    // The broker gives `train` to the least recently used worker, A first (registered first): this
    // quick failure makes the next `train` B's, the one after A's, and so on.
    await assert.rejects(requestTraining(client, { datasetId: NOBODY }), isCode('UNKNOWN_DATASET'));

    // B's `train` handler fetches the dataset, then both workers' train.run have it.
    assert.equal((await train(request(datasetId))).orchestrator, b.pid);
    assert.deepEqual(await manifestOf(dataB, datasetId), await manifestOf(dataA, datasetId));
    assert.equal((await readdir(join(dataB, 'datasets', datasetId, 'images'))).length, 16);
    assert.equal(logLines(b, 'dataset fetched', datasetId), 1);
    const stored = (await stat(join(dataB, 'datasets', datasetId, 'manifest.json'))).mtimeMs;

    // A orchestrates; B's train.run fetches the other dataset.
    assert.equal((await train(request(otherId))).orchestrator, a.pid);
    assert.deepEqual(await manifestOf(dataB, otherId), await manifestOf(dataA, otherId));
    assert.equal(logLines(b, 'dataset fetched', otherId), 1);
    assert.equal(logLines(a, 'dataset fetched', ''), 0);
    // B now offers both datasets too.
    await offering(broker, client, b.pid, [datasetFetchService(datasetId), datasetFetchService(otherId)]);

    // Stored by hash: B trains on the first dataset again without fetching it.
    assert.equal((await train(request(datasetId, 2))).orchestrator, b.pid);
    assert.equal(logLines(b, 'dataset fetched', datasetId), 1, 'fetched again though stored by hash');
    assert.equal((await stat(join(dataB, 'datasets', datasetId, 'manifest.json'))).mtimeMs, stored);
  });

  it('fetches in chunks of the asked size and reports progress per chunk', async () => {
    const dataC = join(dir.path, 'dataC');
    const progress: FetchProgress[] = [];
    const transfer = new DatasetTransfer(new DatasetStore({ data: dataC }), client, { chunkBytes: 1, progressIntervalMs: 0 });
    const [first, second] = await Promise.all([
      transfer.ensure(datasetId, { onProgress: (p) => progress.push(p) }),
      transfer.ensure(datasetId),
    ]);
    assert.deepEqual([first, second], [true, true]);
    assert.equal(transfer.fetched, 1, 'two concurrent needs share one fetch');
    // chunkBytes 1: one image per chunk, so one report per image.
    assert.deepEqual(progress.map((p) => p.done), Array.from({ length: 16 }, (_, i) => i + 1));
    const imagesDir = join(dataA, 'datasets', datasetId, 'images');
    const sizes = await Promise.all((await readdir(imagesDir)).map(async (f) => (await stat(join(imagesDir, f))).size));
    assert.equal(progress.at(-1)!.bytes, sizes.reduce((n, s) => n + s, 0));
    assert.deepEqual(await manifestOf(dataC, datasetId), await manifestOf(dataA, datasetId));
    assert.equal(await transfer.ensure(datasetId), false, 'stored: no second fetch');
    assert.equal(transfer.fetched, 1);
  });

  it('answers UNKNOWN_DATASET before any work for a dataset no worker holds', async () => {
    // Before any work: no started, features or fetch PARTIAL comes first.
    const partials: unknown[] = [];
    await assert.rejects(requestTraining(client, { datasetId: NOBODY, family: 'mlp', epochs: 1 }, { onProgress: (m) => partials.push(m) }), isCode('UNKNOWN_DATASET'));
    const run = { experimentId: 'e0', runId: 'e0-1', index: 1, runs: 1, request: { datasetId: NOBODY, family: 'mlp' }, point: {} };
    const runReplies = async () => {
      for await (const chunk of client.stream(TRAIN_RUN_SERVICE, [encodeJson(run)])) {
        if (chunk.final) return decodeReply(chunk.body[0]);
        partials.push(chunk.body[0]!.toString());
      }
    };
    await assert.rejects(runReplies(), isCode('UNKNOWN_DATASET'));
    assert.deepEqual(partials, []);
    assert.equal(await new DatasetTransfer(new DatasetStore({ data: join(dir.path, 'dataD') }), client).available(NOBODY), false);
    await assert.rejects(new DatasetTransfer(new DatasetStore({ data: join(dir.path, 'dataD') }), undefined).ensure(datasetId), isCode('UNKNOWN_DATASET'));
  });
});

describe('training dataset fetch verification', function () {
  this.timeout(30_000);
  let zip: Buffer;
  let dir: { path: string; remove: () => Promise<void> };
  let source: DatasetStore;
  let manifest: DatasetManifest;
  let files: Buffer[];

  before(async () => {
    zip = await colourZip();
  });

  beforeEach(async () => {
    dir = await tempDir('zerve-dataset-verify-');
    source = new DatasetStore({ data: join(dir.path, 'source') });
    manifest = await source.importArchive(zip);
    files = await source.readImages(manifest, 0, Infinity);
  });

  afterEach(async () => {
    await dir.remove();
  });

  async function* each(images: Buffer[]): AsyncGenerator<Buffer> {
    yield* images;
  }

  /** The target store holds nothing: no dataset directory, no temporary leftovers. */
  async function assertNothingStored(data: string, id: string): Promise<void> {
    assert.equal(await exists(join(data, 'datasets', id)), false);
    assert.deepEqual(await readdir(join(data, 'tmp')).catch(() => []), []);
  }

  it('stores a transfer whose every image matches its manifest, byte for byte', async () => {
    const data = join(dir.path, 'target');
    const target = new DatasetStore({ data });
    const stored = await target.importFetched(manifest.id, JSON.parse(JSON.stringify(manifest)), each(files));
    assert.deepEqual(stored, manifest);
    assert.equal(await readFile(join(data, 'datasets', manifest.id, 'manifest.json'), 'utf8'), await readFile(join(source.datasetsDir, manifest.id, 'manifest.json'), 'utf8'));
    assert.equal(await target.has(manifest.id), true);
  });

  it('rejects a corrupted image with BAD_DATASET and stores nothing', async () => {
    const data = join(dir.path, 'target');
    const tampered = files.map((f) => Buffer.from(f));
    tampered[5]![tampered[5]!.length - 20]! ^= 0xff;
    await assert.rejects(new DatasetStore({ data }).importFetched(manifest.id, manifest, each(tampered)), isCode('BAD_DATASET'));
    await assertNothingStored(data, manifest.id);
  });

  it('rejects a manifest with unsafe or mismatched file names, or missing images', async () => {
    const data = join(dir.path, 'target');
    const store = new DatasetStore({ data });
    const escape = structuredClone(manifest);
    escape.images[0]!.file = '../../../escape.png';
    await assert.rejects(store.importFetched(manifest.id, escape, each(files)), isCode('BAD_DATASET'));
    const renamed = structuredClone(manifest);
    renamed.images[0]!.file = renamed.images[0]!.file.replace(/\.png$/, '.jpg');
    await assert.rejects(store.importFetched(manifest.id, renamed, each(files)), isCode('BAD_DATASET'));
    await assert.rejects(store.importFetched(NOBODY, manifest, each(files)), isCode('BAD_DATASET'));
    await assert.rejects(store.importFetched(manifest.id, manifest, each(files.slice(0, -1))), isCode('BAD_DATASET'));
    await assertNothingStored(data, manifest.id);
  });

  describe('over the wire', () => {
    let broker: Broker;
    let client: ZerveClient;
    let holder: WorkerConnection;

    beforeEach(async () => {
      broker = await startBroker();
      client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 10_000 });
      // A holder that flips one byte of the last image it sends.
      const serving = new DatasetTransfer(source, undefined);
      holder = new WorkerConnection(
        [datasetFetchService(manifest.id)],
        async (body) => {
          const [head, ...images] = await serving.serve(manifest.id, body);
          const reply = JSON.parse(head!.toString()) as DatasetFetchReply;
          if (reply.from + reply.count === reply.total) {
            const last = Buffer.from(images.at(-1)!);
            last[last.length - 20]! ^= 0xff;
            images[images.length - 1] = last;
          }
          return [head!, ...images];
        },
        { connect: broker.backendEndpoint, heartbeatIntervalMs: TEST_HEARTBEAT_MS },
      );
      const registered = nextWorker(broker, (w) => w.services.includes(datasetFetchService(manifest.id)));
      holder.start();
      await registered;
    });

    afterEach(async () => {
      await client.close();
      await holder.close();
      await broker.close();
    });

    it('rejects a tampered transfer and stores nothing', async () => {
      const data = join(dir.path, 'target');
      const transfer = new DatasetTransfer(new DatasetStore({ data }), client, { chunkBytes: 200 });
      assert.equal(await transfer.available(manifest.id), true);
      await assert.rejects(transfer.ensure(manifest.id), isCode('BAD_DATASET'));
      assert.equal(transfer.fetched, 0);
      await assertNothingStored(data, manifest.id);
    });
  });
});
