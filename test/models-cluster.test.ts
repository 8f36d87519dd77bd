/**
 * Models through the cluster, with real processes on loopback: every worker has its own temporary
 * models folder, standing for a host of its own, and nothing is shared but the broker.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import type { WorkerInfo } from '../shared/messages.ts';
import * as zmq from 'zeromq';
import { readModelCatalog, type CatalogEntry } from '../shared/models.ts';
import { MDPW02, WorkerCommand } from '../shared/protocol.ts';
import { WebApp } from '../webapp/web-app.ts';
import { ModelHolder } from '../shared/model-exchange/model-holder.ts';
import { manifestHash } from '../shared/model-exchange/model-manifest.ts';
import { CliProcess, TEST_ENV, TEST_HEARTBEAT_MS, fixtureModel, runCli, spawnWorker, startBroker, tempDir } from './helpers/cluster.ts';
import { image } from './fixtures/inference-models.ts';
import { eventually } from './helpers/eventually.ts';

const SQUEEZENET = ['squeezenet', join(fixtureModel('squeezenet'), 'model.onnx'), '--labels', join(fixtureModel('squeezenet'), 'labels.txt'), '--channels', 'bgr'];
const MNIST = ['mnist', join(fixtureModel('mnist'), 'model.onnx'), '--channels', 'grey', '--logits'];
const ENV = { ...TEST_ENV, ZERVE_MODEL_SYNC_INTERVAL_MS: '300', ZERVE_MODEL_SETTLE_MS: '300', ZERVE_POLL_INTERVAL_MS: '300' };

describe('models through the cluster (processes with separate models folders on loopback)', function () {
  this.timeout(120_000);
  let broker: Broker;
  let client: ZerveClient;
  const processes: CliProcess[] = [];
  const folders: { path: string; remove: () => Promise<void> }[] = [];

  beforeEach(async () => {
    broker = await startBroker({ defaultDeadlineMs: 20_000 });
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 20_000 });
  });

  afterEach(async () => {
    await client.close();
    await Promise.all(processes.splice(0).map((p) => p.kill()));
    await broker.close();
    await Promise.all(folders.splice(0).map((f) => f.remove()));
  });

  async function folder(): Promise<string> {
    const dir = await tempDir('zerve-host-');
    folders.push(dir);
    return dir.path;
  }

  /** An inference worker process over a fresh, empty folder of its own (another host). */
  async function inferenceHost(extra: string[] = [], env = ENV): Promise<{ worker: CliProcess; models: string }> {
    const models = await folder();
    const worker = await spawnWorker(broker, ['inference', '--models', models, '--broker', broker.frontendEndpoint, ...extra], (w) => w.kind === 'inference', env);
    processes.push(worker);
    return { worker, models };
  }

  async function addModel(args: string[], env = ENV) {
    const result = await runCli(['models', 'add', ...args, '--broker', broker.frontendEndpoint], env);
    assert.equal(result.code, 0, result.stderr);
    return result;
  }

  const inferenceWorkers = async (): Promise<WorkerInfo[]> => (await client.workers()).filter((w) => w.kind === 'inference');
  const servedBy = async (pid: number, model: string, version: string) =>
    (await inferenceWorkers()).find((w) => w.pid === pid)?.models?.some((m) => m.name === model && m.versions.includes(version));

  it('serves a model added with `zerve models add --broker` on a worker whose models folder was empty, with no restart', async () => {
    const host = await inferenceHost();
    const added = await addModel(SQUEEZENET);
    assert.match(added.stdout, /added squeezenet version 1 to the cluster/);
    await eventually('squeezenet served', () => servedBy(host.worker.pid, 'squeezenet', '1'));
    const reply = await client.classify('squeezenet', image('kitten.png'));
    assert.equal(reply.version, '1');
    assert.equal(reply.predictions[0]!.index, 281);
    assert.deepEqual(await readdir(join(host.models, 'squeezenet')), ['1']);
  });

  it('gives a fresh worker started later every model of the cluster, and keeps version numbers equal on every host', async () => {
    const first = await inferenceHost();
    await addModel(SQUEEZENET);
    await addModel(SQUEEZENET);
    await addModel(MNIST);
    await eventually('first host has both models', async () => (await servedBy(first.worker.pid, 'squeezenet', '2')) && servedBy(first.worker.pid, 'mnist', '1'));
    const fresh = await inferenceHost();
    await eventually('fresh host has both models', async () => (await servedBy(fresh.worker.pid, 'squeezenet', '2')) && servedBy(fresh.worker.pid, 'mnist', '1'));
    const catalog = await readModelCatalog(client);
    const byNumber = new Map<string, Set<string>>();
    for (const e of catalog) byNumber.set(`${e.name}/${e.version}`, (byNumber.get(`${e.name}/${e.version}`) ?? new Set()).add(e.hash));
    assert.deepEqual([...byNumber.keys()].sort(), ['mnist/1', 'squeezenet/1', 'squeezenet/2']);
    for (const [number, hashes] of byNumber) assert.equal(hashes.size, 1, `${number} has one content cluster-wide`);
    const digit = await client.classify('mnist', image('digit.png'));
    assert.equal(digit.predictions[0]!.label, '8');
  });

  it('numbers two versions added at the same time on two hosts differently, and every host holds the same files under each number', async () => {
    const a = await inferenceHost();
    const b = await inferenceHost();
    // Different files (different labels) added at once: both publishers race for version 1.
    const labels = join(await folder(), 'words.txt');
    await writeFile(labels, ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'].join('\n') + '\n');
    await Promise.all([addModel(MNIST), addModel([...MNIST, '--labels', labels])]);
    await eventually('both hosts serve versions 1 and 2', async () => (await servedBy(a.worker.pid, 'mnist', '2')) && servedBy(b.worker.pid, 'mnist', '2'));
    const catalog = (await readModelCatalog(client)).filter((e) => e.name === 'mnist');
    const versions = new Map<string, CatalogEntry[]>();
    for (const e of catalog) versions.set(e.version, [...(versions.get(e.version) ?? []), e]);
    assert.deepEqual([...versions.keys()].sort(), ['1', '2']);
    for (const [version, entries] of versions) assert.equal(new Set(entries.map((e) => e.hash)).size, 1, `version ${version} stands for one content`);
  });

  it('settles two publishers that claim the same number at once: the lower hash keeps it, the other moves on, and no host serves the loser under it', async () => {
    const watcher = await inferenceHost();
    const labels = join(await folder(), 'words.txt');
    await writeFile(labels, 'zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n');
    // Two publishers in this process: both read the catalog before either claim reaches the broker.
    const holders = await Promise.all([folder(), folder()].map(async (models) => new ModelHolder({ models: await models, connect: broker.backendEndpoint, broker: broker.frontendEndpoint, heartbeatIntervalMs: TEST_HEARTBEAT_MS, modelSettleMs: 300 })));
    try {
      await Promise.all(holders.map((h) => h.start()));
      const file = join(fixtureModel('mnist'), 'model.onnx');
      const staged = [
        await holders[0]!.stage({ name: 'race', file, channels: 'grey', logits: true }),
        await holders[1]!.stage({ name: 'race', file, channels: 'grey', logits: true, labels }),
      ];
      // Both claims start in one tick: both read an empty catalog and claim version 1.
      const published = await Promise.all(staged.map((s, i) => holders[i]!.claim(s)));
      assert.deepEqual(published.map((p) => p.version).sort(), ['1', '2']);
      assert.equal(holders[0]!.renumbered + holders[1]!.renumbered, 1, 'one claim lost and moved on');
      const winner = published.find((p) => p.version === '1')!;
      const loser = published.findIndex((p) => p.version === '2');
      const loserClaim = manifestHash({ name: 'race', version: '1', files: staged[loser]!.files });
      assert.ok(winner.hash < loserClaim, 'the lower hash kept the number');
      await eventually('the watcher serves both', () => servedBy(watcher.worker.pid, 'race', '2'));
      await eventually('the watcher holds both', async () => (await readModelCatalog(client)).filter((e) => e.name === 'race' && e.holders === 2).length === 2);
      const catalog = (await readModelCatalog(client)).filter((e) => e.name === 'race');
      for (const version of ['1', '2']) {
        assert.deepEqual(catalog.filter((e) => e.version === version).map((e) => e.hash), [published.find((p) => p.version === version)!.hash], `version ${version} stands for one content`);
      }
    } finally {
      await Promise.all(holders.map((h) => h.close()));
    }
  });

  it('serves only the models of --serve and fetches no other', async () => {
    const only = await inferenceHost(['--serve', 'mnist']);
    const all = await inferenceHost();
    await addModel(SQUEEZENET);
    await addModel(MNIST);
    await eventually('the unfiltered host serves both', async () => (await servedBy(all.worker.pid, 'squeezenet', '1')) && servedBy(all.worker.pid, 'mnist', '1'));
    await eventually('the filtered host serves mnist', () => servedBy(only.worker.pid, 'mnist', '1'));
    // Several sync rounds later, still nothing of squeezenet on the filtered host.
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual((await readdir(only.models)).filter((f) => !f.startsWith('.')), ['mnist']);
    const info = (await inferenceWorkers()).find((w) => w.pid === only.worker.pid)!;
    assert.deepEqual(info.models?.map((m) => m.name), ['mnist']);
    assert.ok(!info.services.includes('classify.squeezenet'));
  });

  it('adds a model uploaded to the web app (POST /api/models) to the cluster, with its labels file, and refuses a file that is not a model', async () => {
    const host = await inferenceHost();
    const web = new WebApp({ broker: broker.frontendEndpoint, http: 0, heartbeatIntervalMs: TEST_HEARTBEAT_MS });
    const url = await web.start();
    try {
      const body = await readFile(join(fixtureModel('mnist'), 'model.onnx'));
      const words = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
      const form = new FormData();
      form.append('model', new Blob([body]), 'model.onnx');
      form.append('labels', new Blob([words.join('\n') + '\n']), 'labels.txt');
      const res = await fetch(`${url}api/models?name=digits&channels=grey&logits=true&size=28x28&mean=0&std=1`, { method: 'POST', body: form });
      assert.equal(res.status, 201, await res.clone().text());
      const added = (await res.json()) as { name: string; version: string; sha256: string };
      assert.equal(added.name, 'digits');
      assert.equal(added.version, '1');
      assert.match(added.sha256, /^[0-9a-f]{64}$/);
      await eventually('digits served', () => servedBy(host.worker.pid, 'digits', '1'));
      assert.equal((await client.classify('digits', image('digit.png'))).predictions[0]!.label, 'eight', 'the uploaded labels name the classes');
      const config = JSON.parse(await readFile(join(host.models, "digits", "1", "config.json"), "utf8")) as { input: { mean: number[]; std: number[]; width: number } };
      assert.deepEqual([config.input.mean, config.input.std, config.input.width], [[0], [1], 28], 'the query options reach the version config');
      const shortLabels = new FormData();
      shortLabels.append('model', new Blob([body]), 'model.onnx');
      shortLabels.append('labels', new Blob(['zero\none\n']), 'labels.txt');
      const mismatch = await fetch(`${url}api/models?name=digits&channels=grey`, { method: 'POST', body: shortLabels });
      assert.equal(mismatch.status, 400, 'a labels file whose line count does not fit the model');
      const bad = await fetch(`${url}api/models?name=junk`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from('not an onnx file') });
      assert.equal(bad.status, 400);
      assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'BAD_REQUEST');
      const unnamed = await fetch(`${url}api/models`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body });
      assert.equal(unnamed.status, 400);
      assert.ok(!(await readModelCatalog(client)).some((e) => e.name === 'junk'));
    } finally {
      await web.close();
    }
  });

  it('answers `zerve models add` run again with the same --idempotency-key with the first version, and a new key with a new one', async () => {
    await inferenceHost();
    const versions = async () => (await readModelCatalog(client)).filter((e) => e.name === 'mnist').map((e) => e.version).sort();
    assert.match((await addModel([...MNIST, '--idempotency-key', 'publish-1'])).stdout, /added mnist version 1 to the cluster/);
    assert.match((await addModel([...MNIST, '--idempotency-key', 'publish-1'])).stdout, /added mnist version 1 to the cluster/);
    assert.deepEqual(await versions(), ['1']);
    assert.match((await addModel([...MNIST, '--idempotency-key', 'publish-2'])).stdout, /added mnist version 2 to the cluster/);
    const bad = await runCli(['models', 'add', ...MNIST, '--idempotency-key', 'has space', '--broker', broker.frontendEndpoint], ENV);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /BAD_REQUEST/);
    assert.deepEqual(await versions(), ['1', '2']);
  });

  it('answers POST /api/models resent with the same Idempotency-Key with the first version, and refuses a malformed key', async () => {
    await inferenceHost();
    const web = new WebApp({ broker: broker.frontendEndpoint, http: 0, heartbeatIntervalMs: TEST_HEARTBEAT_MS });
    const url = await web.start();
    try {
      const body = await readFile(join(fixtureModel('mnist'), 'model.onnx'));
      const post = (key: string) =>
        fetch(`${url}api/models?name=digits&channels=grey&logits=true`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'idempotency-key': key }, body });
      const first = await post('upload-1');
      assert.equal(first.status, 201, await first.clone().text());
      const firstBody = (await first.json()) as { version: string; sha256: string };
      assert.equal(firstBody.version, '1');
      const again = await post('upload-1');
      assert.equal(again.status, 201);
      assert.deepEqual(await again.json(), firstBody);
      const other = await post('upload-2');
      assert.equal(((await other.json()) as { version: string }).version, '2');
      const bad = await post('x'.repeat(129));
      assert.equal(bad.status, 400);
      assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'BAD_REQUEST');
      assert.deepEqual((await readModelCatalog(client)).filter((e) => e.name === 'digits').map((e) => e.version).sort(), ['1', '2']);
    } finally {
      await web.close();
    }
  });

  it('refuses through the CLI a file that is not a model (BAD_REQUEST) and a model no worker takes (NO_WORKERS), leaving the catalog empty', async () => {
    const junk = join(await folder(), 'junk.onnx');
    await writeFile(junk, 'not an onnx file');
    const bad = await runCli(['models', 'add', 'junk', junk, '--broker', broker.frontendEndpoint], ENV);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /BAD_REQUEST/);
    const unwanted = await runCli(['models', 'add', ...MNIST, '--broker', broker.frontendEndpoint, '--model-handoff-timeout-ms', '1500'], ENV);
    assert.equal(unwanted.code, 1);
    assert.match(unwanted.stderr, /NO_WORKERS: no inference worker took mnist version 1/);
    assert.deepEqual(await readModelCatalog(client), [], 'the CLI let go of what nobody took');
  });

  it('registers a READY whose models field is malformed, without the models (the extension stays optional)', async () => {
    const socket = new zmq.Dealer({ linger: 0 });
    socket.connect(broker.backendEndpoint);
    try {
      const extension = { services: ['classify.odd'], capacity: 1, kind: 'inference', host: 'elsewhere', pid: 4242, models: [{ name: 'odd', versions: 'not a list', latest: '1' }, 7] };
      await socket.send([MDPW02, Buffer.from([WorkerCommand.READY]), Buffer.from('classify.odd'), Buffer.from(JSON.stringify(extension))]);
      const info = await eventually('the odd worker', async () => (await client.workers()).find((w) => w.pid === 4242));
      assert.deepEqual(info.models, []);
      assert.deepEqual(info.services, ['classify.odd']);
    } finally {
      socket.close();
    }
  });

  it('catches up a worker that was down while a model was added', async () => {
    const holder = await inferenceHost();
    const returning = await inferenceHost();
    await returning.worker.kill('SIGTERM');
    await addModel(MNIST);
    await eventually('the running host serves mnist', () => servedBy(holder.worker.pid, 'mnist', '1'));
    const back = await spawnWorker(broker, ['inference', '--models', returning.models, '--broker', broker.frontendEndpoint], (w) => w.kind === 'inference', ENV);
    processes.push(back);
    await eventually('the returning host serves mnist', () => servedBy(back.pid, 'mnist', '1'));
  });
});
