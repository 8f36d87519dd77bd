/**
 * Model transfers between processes: a holder is an inference worker process over a folder of its
 * own; the receiver is a ModelFetcher in this process over another folder, both through a real broker.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, open, readdir, readFile, rename, stat, truncate, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { readModelCatalog, type CatalogEntry } from '../shared/models.ts';
import { readManifest, sha256File } from '../shared/model-exchange/model-manifest.ts';
import { makeBenchRepository } from './helpers/bench-repository.ts';
import { INCOMING_FOLDER, ModelFetcher } from '../shared/model-exchange/model-transfer.ts';
import { CliProcess, TEST_ENV, fixtureModel, spawnWorker, startBroker, tempDir } from './helpers/cluster.ts';
import { ZerveError } from '../shared/errors.ts';
import { makeRepository } from './fixtures/inference-models.ts';
import { eventually } from './helpers/eventually.ts';

const codeOf = (err: unknown) => (err instanceof ZerveError ? err.code : undefined);

// The holder never rescans during a test: a file changed under it is served as it now is.
const HOLDER_ENV = { ...TEST_ENV, ZERVE_POLL_INTERVAL_MS: '600000' };
const CHUNK = 256 * 1024;

describe('model transfers between processes (corrupt, truncated, resumed)', function () {
  this.timeout(120_000);
  let broker: Broker;
  let client: ZerveClient;
  const processes: CliProcess[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeEach(async () => {
    broker = await startBroker({ defaultDeadlineMs: 20_000 });
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 20_000 });
  });

  afterEach(async () => {
    await client.close();
    await Promise.all(processes.splice(0).map((p) => p.kill()));
    await broker.close();
    await Promise.all(cleanups.splice(0).map((c) => c()));
  });

  /** A holder process over a repository of the fixtures' models. */
  async function holder(models?: string): Promise<{ worker: CliProcess; models: string }> {
    if (!models) {
      models = await makeRepository();
      const folder = models;
      cleanups.push(() => import('node:fs/promises').then((fs) => fs.rm(folder, { recursive: true, force: true })));
    }
    const worker = await spawnWorker(broker, ['inference', '--models', models, '--serve', 'none'], (w) => w.kind === 'models' && w.services.length >= 3, HOLDER_ENV);
    processes.push(worker);
    return { worker, models };
  }

  async function receiver(options: ConstructorParameters<typeof ModelFetcher>[2] = {}): Promise<{ fetcher: ModelFetcher; models: string }> {
    const dir = await tempDir('zerve-receiver-');
    cleanups.push(dir.remove);
    return { fetcher: new ModelFetcher(dir.path, client, { modelChunkBytes: CHUNK, ...options }), models: dir.path };
  }

  async function entry(name: string): Promise<CatalogEntry> {
    return eventually(`${name} in the catalog`, async () => (await readModelCatalog(client)).find((e) => e.name === name));
  }

  /** Changes a holder's file in place, keeping its size and modification time (what the holder's stamp looks at). */
  async function corrupt(file: string, at: number): Promise<void> {
    const before = await stat(file);
    await chmod(file, 0o644);
    const handle = await open(file, 'r+');
    await handle.write(Buffer.from('not the same bytes'), 0, 18, at);
    await handle.close();
    await utimes(file, before.atime, before.mtime);
  }

  async function nothingInstalled(models: string, name: string): Promise<void> {
    const entries = await readdir(models);
    assert.ok(!entries.includes(name), `no ${name} folder in the repository`);
    const incoming = await readdir(join(models, INCOMING_FOLDER)).catch(() => [] as string[]);
    assert.deepEqual(incoming, [], 'nothing left staged');
  }

  it('refuses a file whose bytes do not match its SHA-256 with BAD_TRANSFER and installs nothing', async () => {
    const { models: held } = await holder();
    const ref = await entry('squeezenet');
    await corrupt(join(held, 'squeezenet', '1', 'model.onnx'), 1_000_000);
    const { fetcher, models } = await receiver();
    await assert.rejects(fetcher.fetch(ref), (err) => codeOf(err) === 'BAD_TRANSFER' && /SHA-256/.test((err as Error).message));
    await nothingInstalled(models, 'squeezenet');
  });

  it('refuses a file that ends early with BAD_TRANSFER and installs nothing', async () => {
    const { models: held } = await holder();
    const ref = await entry('squeezenet');
    const file = join(held, 'squeezenet', '1', 'model.onnx');
    await chmod(file, 0o644);
    await truncate(file, 1_000_000);
    const { fetcher, models } = await receiver();
    await assert.rejects(fetcher.fetch(ref), (err) => codeOf(err) === 'BAD_TRANSFER' && /truncated/.test((err as Error).message));
    await nothingInstalled(models, 'squeezenet');
  });

  it('refuses a version asked for under a hash nobody holds (NO_WORKERS), before anything is written', async () => {
    const { fetcher, models } = await receiver({ modelChunkTimeoutMs: 500 });
    await assert.rejects(fetcher.fetch({ name: 'squeezenet', version: '1', hash: 'a'.repeat(64) }), (err) => ['NO_WORKERS', 'TIMEOUT'].includes(codeOf(err) ?? ''));
    await nothingInstalled(models, 'squeezenet');
  });

  it('describes a version whose files are symbolic links by the files they point to', async () => {
    const repo = await makeBenchRepository('squeezenet-fp32', fixtureModel('squeezenet-fp32'));
    cleanups.push(repo.remove);
    const manifest = await readManifest(join(repo.path, 'squeezenet-fp32', '1'), 'squeezenet-fp32', '1');
    assert.deepEqual(manifest.files.map((f) => f.name), ['config.json', 'labels.txt', 'model.onnx']);
    const onnx = manifest.files.find((f) => f.name === 'model.onnx')!;
    assert.equal(onnx.bytes, 4952166);
    assert.equal(onnx.sha256, await sha256File(join(fixtureModel('squeezenet-fp32'), 'model.onnx')));
  });

  it('refuses a malformed version reference with BAD_REQUEST', async () => {
    const { fetcher } = await receiver();
    await assert.rejects(fetcher.fetch({ name: '../etc', version: '1', hash: 'a'.repeat(64) }), (err) => codeOf(err) === 'BAD_REQUEST');
    await assert.rejects(fetcher.fetch({ name: 'x', version: '1', hash: 'nothex' }), (err) => codeOf(err) === 'BAD_REQUEST');
  });

  it('carries on with another holder when the one serving it is killed mid-transfer, without fetching any byte twice', async () => {
    const first = await holder();
    await holder();
    const ref = await eventually('two holders of squeezenet-fp32', async () => (await readModelCatalog(client)).find((e) => e.name === 'squeezenet-fp32' && e.holders === 2));
    const { fetcher, models } = await receiver();
    let killed: Promise<void> | undefined;
    const result = await fetcher.fetch(ref, (p) => {
      if (!killed && p.bytes > 1_000_000) killed = first.worker.kill();
    });
    await killed;
    assert.ok(killed, 'a holder was killed during the transfer');
    const total = (await readdir(result.dir)).length;
    assert.equal(total, 3);
    assert.equal(result.received, (await stat(join(result.dir, 'model.onnx'))).size + (await stat(join(result.dir, 'labels.txt'))).size + (await stat(join(result.dir, 'config.json'))).size);
    assert.equal(await sha256File(join(result.dir, 'model.onnx')), await sha256File(join(first.models, 'squeezenet-fp32', '1', 'model.onnx')));
    await nothingInstalled(models, 'none');
  });

  it('installs a version once, whole, when two fetchers sharing one folder (zerve up --workers 2) take it at the same time', async () => {
    const { models: source } = await holder();
    const ref = await entry('squeezenet-fp32');
    const { fetcher, models } = await receiver();
    const sibling = new ModelFetcher(models, client, { modelChunkBytes: CHUNK });
    const results = await Promise.all([fetcher.fetch(ref), sibling.fetch(ref)]);
    assert.deepEqual(results.map((r) => r.dir), [join(models, 'squeezenet-fp32', '1'), join(models, 'squeezenet-fp32', '1')]);
    assert.deepEqual(await readFile(join(models, 'squeezenet-fp32', '1', 'model.onnx')), await readFile(join(source, 'squeezenet-fp32', '1', 'model.onnx')));
    assert.deepEqual(await readdir(join(models, INCOMING_FOLDER)).catch(() => []), [], 'nothing left staged');
  });

  it('takes over the bytes a dead process staged for the same version, and resumes from them', async () => {
    const first = await holder();
    const ref = await entry('squeezenet-fp32');
    const { fetcher, models } = await receiver({ modelChunkTimeoutMs: 1500, modelChunkRetries: 0 });
    let killed: Promise<void> | undefined;
    await assert.rejects(fetcher.fetch(ref, (p) => {
      if (!killed && p.bytes > 1_000_000) killed = first.worker.kill();
    }));
    await killed;
    // What this process staged, renamed as if a process that has exited had staged it.
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    const [staged] = await readdir(join(models, INCOMING_FOLDER));
    await rename(join(models, INCOMING_FOLDER, staged!), join(models, INCOMING_FOLDER, `squeezenet-fp32.1.${ref.hash}.${gone}.0000`));
    await holder(first.models);
    const result = await new ModelFetcher(models, client, { modelChunkBytes: CHUNK }).fetch(ref);
    assert.ok(result.resumed > 1_000_000, `resumed from ${result.resumed} bytes`);
    assert.deepEqual(await readFile(join(result.dir, 'model.onnx')), await readFile(join(first.models, 'squeezenet-fp32', '1', 'model.onnx')));
  });

  it('resumes from the staged bytes when its only holder died and came back', async () => {
    const first = await holder();
    const ref = await entry('squeezenet-fp32');
    const { fetcher, models } = await receiver({ modelChunkTimeoutMs: 1500, modelChunkRetries: 0 });
    let killed: Promise<void> | undefined;
    await assert.rejects(
      fetcher.fetch(ref, (p) => {
        if (!killed && p.bytes > 1_000_000) killed = first.worker.kill();
      }),
      (err) => ['NO_WORKERS', 'TIMEOUT', 'WORKER_LOST'].includes(codeOf(err) ?? ''),
    );
    await killed;
    assert.ok(!(await readdir(models)).includes('squeezenet-fp32'), 'not installed while incomplete');
    await holder(first.models);
    const result = await fetcher.fetch(ref);
    assert.ok(result.resumed > 1_000_000, `resumed from ${result.resumed} bytes`);
    const size = 4952166 + 21676 + (await stat(join(result.dir, 'config.json'))).size;
    assert.equal(result.resumed + result.received, size);
    assert.deepEqual(await readFile(join(result.dir, 'model.onnx')), await readFile(join(first.models, 'squeezenet-fp32', '1', 'model.onnx')));
  });
});
