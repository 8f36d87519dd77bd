/**
 * Publishing models under CURVE: a broker whose worker socket takes listed keys only, an inference
 * worker process with its own empty models folder, and the publishers (the web app's
 * `POST /api/models`, `zerve models add`, `zerve up`'s page) offering the new version on the worker socket.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { generateKeyFiles } from '../shared/curve-keys.ts';
import { readModelCatalog } from '../shared/models.ts';
import { WebApp } from '../webapp/web-app.ts';
import { CliProcess, TEST_ENV, fixtureImage, fixtureModel, runCli, spawnWorker, tempDir } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';

// CURVE handshakes and model loading on a loaded 2-core machine lose 200 ms heartbeats: the defaults' pace.
const HEARTBEAT_MS = 1000;
const ENV = { ...TEST_ENV, ZERVE_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS), ZERVE_MODEL_SYNC_INTERVAL_MS: '300', ZERVE_MODEL_SETTLE_MS: '300', ZERVE_POLL_INTERVAL_MS: '300' };
const SQUEEZENET = fixtureModel('squeezenet');

/** A multipart form of `POST /api/models`: the ONNX file, and a labels file when given. */
async function modelForm(model: string, labels?: string): Promise<FormData> {
  const form = new FormData();
  form.append('model', new Blob([await readFile(model)]), 'model.onnx');
  if (labels) form.append('labels', new Blob([await readFile(labels)]), 'labels.txt');
  return form;
}

describe('model publishing under CURVE (the web app and the CLI offer versions on the worker socket)', function () {
  this.timeout(120_000);
  let dir: { path: string; remove: () => Promise<void> };
  let keys: string;
  let broker: Broker;
  let client: ZerveClient;
  let inference: CliProcess;
  const key = (name: string) => join(keys, `${name}.key`);
  const pub = (name: string) => join(keys, `${name}.pub`);
  const webApps: WebApp[] = [];

  before(async () => {
    dir = await tempDir('zerve-models-curve-');
    keys = join(dir.path, 'keys');
    for (const name of ['broker', 'host-a', 'web', 'stranger']) await generateKeyFiles(name, keys);
    const allowed = join(dir.path, 'authorized-workers');
    await mkdir(allowed);
    for (const name of ['host-a', 'web']) await copyFile(pub(name), join(allowed, `${name}.pub`));
    broker = new Broker(
      { frontend: 'tcp://127.0.0.1:0', backend: 'tcp://127.0.0.1:0', heartbeatIntervalMs: HEARTBEAT_MS, defaultDeadlineMs: 20_000, curveKey: key('broker'), authorizedWorkers: allowed },
      testLogger,
    );
    await broker.start();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 20_000 });
    const models = join(dir.path, 'host-a-models');
    await mkdir(models);
    inference = await spawnWorker(
      broker,
      ['inference', '--models', models, '--broker', broker.frontendEndpoint, '--curve-key', key('host-a'), '--broker-key', pub('broker')],
      (w) => w.kind === 'inference',
      ENV,
    );
  });

  afterEach(async () => {
    await Promise.all(webApps.splice(0).map((w) => w.close()));
  });

  after(async () => {
    await client?.close();
    await inference?.kill();
    await broker?.close();
    await dir?.remove();
  });

  async function webApp(keyName: string): Promise<string> {
    const web = new WebApp({ broker: broker.frontendEndpoint, connect: broker.backendEndpoint, curveKey: key(keyName), brokerKey: pub('broker'), http: 0, heartbeatIntervalMs: HEARTBEAT_MS }, testLogger);
    webApps.push(web);
    return web.start();
  }

  it("serves a model uploaded with its labels file to a web app whose key is listed, from an inference worker process that had no models", async () => {
    const url = await webApp('web');
    const body = await modelForm(join(SQUEEZENET, 'model.onnx'), join(SQUEEZENET, 'labels.txt'));
    const res = await fetch(`${url}api/models?name=squeezenet&channels=bgr`, { method: 'POST', body });
    assert.equal(res.status, 201, await res.clone().text());
    const added = (await res.json()) as { name: string; version: string };
    assert.deepEqual([added.name, added.version], ['squeezenet', '1']);
    await eventually('squeezenet served by the inference worker', async () =>
      (await client.workers()).some((w) => w.pid === inference.pid && w.models?.some((m) => m.name === 'squeezenet' && m.latest === '1')),
    );
    const reply = await client.classify('squeezenet', await readFile(fixtureImage('kitten.png')));
    assert.equal(reply.predictions[0]!.index, 281);
    assert.equal(reply.predictions[0]!.label, 'tabby, tabby cat', 'the uploaded labels name the classes');
  });

  it('answers an upload NOT_ADMITTED (502) at once when the web app\'s key is not listed, and publishes nothing', async () => {
    const url = await webApp('stranger');
    const body = await modelForm(join(fixtureModel('mnist'), 'model.onnx'));
    const res = await fetch(`${url}api/models?name=refused&channels=grey&logits=true`, { method: 'POST', body });
    assert.equal(res.status, 502);
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(error.code, 'NOT_ADMITTED');
    assert.match(error.message, /refused this process's CURVE key .* --authorized-workers/);
    assert.ok(!(await readModelCatalog(client)).some((e) => e.name === 'refused'));
  });

  it('refuses `zerve models add --connect` with an unlisted key as NOT_ADMITTED, and adds with a listed one', async () => {
    const mnist = [join(fixtureModel('mnist'), 'model.onnx'), '--channels', 'grey', '--logits', '--broker', broker.frontendEndpoint, '--connect', broker.backendEndpoint, '--broker-key', pub('broker')];
    const refused = await runCli(['models', 'add', 'digits', ...mnist, '--curve-key', key('stranger')], ENV);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /NOT_ADMITTED: the broker at .* refused this process's CURVE key/);
    const added = await runCli(['models', 'add', 'digits', ...mnist, '--curve-key', key('web')], ENV);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /added digits version 1 to the cluster/);
  });

  it('lets an inference worker given no --broker read the catalog on the worker socket, and take a new version', async () => {
    // The catalog client of a worker without --broker talks to the worker socket: under CURVE it must
    // speak CURVE there, whatever --client-auth says (it spoke plain ZMTP, was refused, and never synced).
    const models = join(dir.path, 'connect-only-models');
    await mkdir(models);
    const worker = await spawnWorker(broker, ['inference', '--models', models, '--curve-key', key('host-a'), '--broker-key', pub('broker')], (w) => w.kind === 'inference', ENV);
    try {
      const args = [join(fixtureModel('mnist'), 'model.onnx'), '--channels', 'grey', '--logits', '--broker', broker.frontendEndpoint, '--connect', broker.backendEndpoint, '--broker-key', pub('broker'), '--curve-key', key('web')];
      const added = await runCli(['models', 'add', 'digits-connect-only', ...args], ENV);
      assert.equal(added.code, 0, added.stderr);
      await eventually('digits-connect-only served by the worker without --broker', async () =>
        (await client.workers()).some((w) => w.pid === worker.pid && w.models?.some((m) => m.name === 'digits-connect-only' && m.latest === '1')),
      );
      assert.doesNotMatch(worker.stderr + worker.stdout, /cannot read the cluster catalog/);
    } finally {
      await worker.kill();
    }
  });
});

describe('zerve up with --curve-key: the page adds a model with no other option', function () {
  this.timeout(120_000);
  let dir: { path: string; remove: () => Promise<void> };
  let up: CliProcess | undefined;
  let client: ZerveClient | undefined;

  before(async () => {
    dir = await tempDir('zerve-up-curve-');
  });

  afterEach(function () {
    // What zerve up said is the only trace of a failure inside it.
    if (this.currentTest?.state === 'failed') console.error(`zerve up stderr:\n${up?.stderr.slice(-8000)}\nstdout:\n${up?.stdout.slice(-8000)}`);
  });

  after(async () => {
    await client?.close();
    await up?.kill('SIGTERM');
    await dir?.remove();
  });

  it("publishes an upload through the broker's worker socket and serves it with its labels", async () => {
    await generateKeyFiles('broker', join(dir.path, 'keys'));
    // Port 0 everywhere: zerve up hands its processes the endpoints it bound, and prints the page's URL.
    up = new CliProcess(
      ['up', '--models', join(dir.path, 'models'), '--workers', '1', '--training-workers', '0', '--frontend', 'tcp://127.0.0.1:0', '--backend', 'tcp://127.0.0.1:0', '--http', '0', '--curve-key', join(dir.path, 'keys', 'broker.key')],
      ENV,
    );
    await eventually('the web app and the inference worker to start', () => /web app at http/.test(up!.stderr) && /workers ready: 1\/1/.test(up!.stderr), 90_000);
    const url = /web app at (http\S+)/.exec(up.stderr)![1]!;
    const frontend = /zerve: broker (tcp:\S+)/.exec(up.stderr)![1]!;
    client = new ZerveClient({ broker: frontend, timeoutMs: 20_000 });
    const body = await modelForm(join(SQUEEZENET, 'model.onnx'), join(SQUEEZENET, 'labels.txt'));
    const res = await fetch(`${url}api/models?name=squeezenet&channels=bgr`, { method: 'POST', body });
    assert.equal(res.status, 201, await res.clone().text());
    const kitten = await readFile(fixtureImage('kitten.png'));
    const reply = await eventually('squeezenet served', () => client!.classify('squeezenet', kitten));
    assert.equal(reply.predictions[0]!.label, 'tabby, tabby cat');
  });
});
