/**
 * Model removal through the cluster, with real processes on loopback: two inference workers, each
 * over a models folder of its own (two hosts), one broker, and the CLI or the web app removing.
 * One cluster for the file: starting workers and loading onnxruntime is the slow part.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AuthAdmin } from '../shared/auth-admin.ts';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { ZerveError, type ErrorCode } from '../shared/errors.ts';
import { readModelState } from '../shared/models.ts';
import { SqliteAuthStore } from '../shared/store/sqlite-auth-store.ts';
import { WebApp } from '../webapp/web-app.ts';
import { image } from './fixtures/inference-models.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';
import { CliProcess, TEST_ENV, TEST_HEARTBEAT_MS, fixtureModel, runCli, spawnWorker, startBroker, tempDir } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';

const MNIST_FILE = join(fixtureModel('mnist'), 'model.onnx');
const ENV = { ...TEST_ENV, ZERVE_MODEL_SYNC_INTERVAL_MS: '200', ZERVE_MODEL_SETTLE_MS: '200', ZERVE_POLL_INTERVAL_MS: '200' };

describe('model removal through the cluster (two inference workers, separate folders)', function () {
  this.timeout(120_000);
  let broker: Broker;
  let client: ZerveClient;
  const hosts: { worker: CliProcess; models: string }[] = [];
  const others: CliProcess[] = [];
  const folders: { path: string; remove: () => Promise<void> }[] = [];

  before(async () => {
    broker = await startBroker({ defaultDeadlineMs: 20_000 });
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 20_000 });
    for (let i = 0; i < 2; i++) {
      const dir = await tempDir('zerve-removal-host-');
      folders.push(dir);
      hosts.push({ worker: await startWorker(dir.path), models: dir.path });
    }
  });

  after(async () => {
    await client?.close();
    await Promise.all([...hosts.map((h) => h.worker.kill()), ...others.map((w) => w.kill())]);
    await broker?.close();
    await Promise.all(folders.map((f) => f.remove()));
  });

  function startWorker(models: string): Promise<CliProcess> {
    return spawnWorker(broker, ['inference', '--models', models, '--broker', broker.frontendEndpoint], (w) => w.kind === 'inference', ENV);
  }

  async function cli(args: string[]) {
    return runCli([...args, '--broker', broker.frontendEndpoint], ENV);
  }

  /** Whether the worker process `pid` announces `model` at `version`. */
  async function serves(pid: number, model: string, version: string): Promise<boolean> {
    const worker = (await client.workers()).find((w) => w.kind === 'inference' && w.pid === pid);
    return worker?.models?.some((m) => m.name === model && m.versions.includes(version)) ?? false;
  }

  const servedOnBoth = (model: string, version: string) => eventually(`${model} ${version} on both workers`, async () => (await serves(hosts[0]!.worker.pid, model, version)) && serves(hosts[1]!.worker.pid, model, version));

  async function classifyCode(model: string, version: string): Promise<ErrorCode | 'ok'> {
    try {
      await client.classify(model, image('digit.png'), { version });
      return 'ok';
    } catch (err) {
      return ZerveError.from(err).code;
    }
  }

  it('removes a version through the CLI from both workers, answers requests in flight, and keeps it gone after a restart', async () => {
    for (let i = 0; i < 2; i++) assert.equal((await cli(['models', 'add', 'mnist', MNIST_FILE, '--channels', 'grey', '--logits'])).code, 0);
    await servedOnBoth('mnist', '2');
    assert.equal((await client.classify('mnist', image('digit.png'), { version: '2' })).predictions[0]!.label, '8');

    // Requests pinned to version 2, eight at a time, for as long as the removal runs.
    let removing = true;
    const outcomes: (ErrorCode | 'ok')[] = [];
    const stream = Promise.all(
      Array.from({ length: 8 }, async () => {
        while (removing) outcomes.push(await classifyCode('mnist', '2'));
      }),
    );
    const removed = await cli(['models', 'remove', 'mnist', '--version', '2']);
    removing = false;
    await stream;
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, /removed mnist version 2 from the cluster/);
    assert.ok(outcomes.includes('ok'), 'requests were answered while the removal ran');
    assert.deepEqual([...new Set(outcomes)].filter((c) => c !== 'ok' && c !== 'UNKNOWN_MODEL'), [], 'every request got its answer or UNKNOWN_MODEL');

    for (const host of hosts) {
      assert.equal(await serves(host.worker.pid, 'mnist', '2'), false, `worker ${host.worker.pid} dropped version 2`);
      assert.equal(await serves(host.worker.pid, 'mnist', '1'), true, `worker ${host.worker.pid} keeps version 1`);
      assert.deepEqual(await readdir(join(host.models, 'mnist')), ['1'], 'the files are deleted');
      assert.deepEqual(await readdir(join(host.models, '.removed', 'mnist')), ['2'], 'the tombstone is kept');
    }
    for (let i = 0; i < 4; i++) assert.equal(await classifyCode('mnist', '2'), 'UNKNOWN_MODEL');
    assert.equal(await classifyCode('mnist', '1'), 'ok');

    // A restarted worker neither serves the version nor fetches it again, and a new version takes the next number.
    const [first] = hosts;
    await first!.worker.kill();
    first!.worker = await startWorker(first!.models);
    await eventually('the restarted worker serves version 1', () => serves(first!.worker.pid, 'mnist', '1'));
    const again = await cli(['models', 'add', 'mnist', MNIST_FILE, '--channels', 'grey', '--logits']);
    assert.match(again.stdout, /added mnist version 3 to the cluster/, 'a removed number is not given out again');
    await servedOnBoth('mnist', '3');
    assert.equal(await serves(first!.worker.pid, 'mnist', '2'), false);
    assert.deepEqual((await readdir(join(first!.models, 'mnist'))).sort(), ['1', '3']);
    const { catalog, removed: tombstones } = await readModelState(client);
    assert.deepEqual(catalog.filter((e) => e.name === 'mnist').map((e) => e.version).sort(), ['1', '3'], 'the catalog lists no version 2');
    assert.ok(tombstones.some((t) => t.name === 'mnist' && t.version === '2' && t.holders === 2), 'both workers keep the tombstone');
    assert.equal(await classifyCode('mnist', '2'), 'UNKNOWN_MODEL');

    // A host that was down during the removal comes back with version 2 and no tombstone: it takes the
    // tombstone from the others and deletes its copy, and nobody fetches version 2 from it.
    const stale = await tempDir('zerve-removal-stale-');
    folders.push(stale);
    for (let i = 0; i < 2; i++) assert.equal((await runCli(['models', 'add', 'mnist', MNIST_FILE, '--channels', 'grey', '--logits', '--models', stale.path], ENV)).code, 0);
    const late = await startWorker(stale.path);
    others.push(late);
    await eventually('the late host deletes version 2 and takes version 3', async () => {
      const versions = (await readdir(join(stale.path, 'mnist'))).sort();
      return versions.join() === '1,3' && (await serves(late.pid, 'mnist', '3')) && !(await serves(late.pid, 'mnist', '2'));
    });
    assert.deepEqual(await readdir(join(stale.path, '.removed', 'mnist')), ['2']);
    for (const host of hosts) assert.deepEqual((await readdir(join(host.models, 'mnist'))).sort(), ['1', '3'], 'no host fetched version 2 back');

    const unknown = await cli(['models', 'remove', 'mnist', '--version', '2']);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /UNKNOWN_MODEL/);
  });

  it('removes a model over HTTP for its owner only: no token 401, another member 403, the owner 200, audited', async () => {
    const data = await tempDir('zerve-removal-auth-');
    folders.push(data);
    const store = SqliteAuthStore.inDataDir(data.path);
    const admin = new AuthAdmin(store, 'test');
    const tokens: Record<string, string> = {};
    for (const name of ['ann', 'bob']) {
      await admin.addUser(name, 'member');
      tokens[name] = (await admin.createToken(name, 'models')).token;
    }
    const web = new WebApp({ broker: broker.frontendEndpoint, http: 0, heartbeatIntervalMs: TEST_HEARTBEAT_MS, auth: 'tokens', data: data.path, authCacheMs: 200 }, testLogger);
    try {
      await web.start();
      const call = async (method: string, path: string, token?: string, body?: Buffer) => {
        const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
        if (body) headers['content-type'] = 'application/octet-stream';
        const res = await fetch(new URL(path, web.url), { method, headers, ...(body ? { body: new Uint8Array(body) } : {}) });
        return { status: res.status, body: (await res.json()) as { error?: { code: string }; version?: string; versions?: string[] } };
      };
      const added = await call('POST', '/api/models?name=digits&channels=grey&logits=true', tokens.ann, await readFile(MNIST_FILE));
      assert.equal(added.status, 201, JSON.stringify(added.body));
      await servedOnBoth('digits', added.body.version!);

      const none = await call('DELETE', '/api/models/digits');
      assert.deepEqual([none.status, none.body.error?.code], [401, 'UNAUTHENTICATED']);
      const other = await call('DELETE', '/api/models/digits', tokens.bob);
      assert.deepEqual([other.status, other.body.error?.code], [403, 'FORBIDDEN']);
      const bad = await call('DELETE', '/api/models/no.such', tokens.ann);
      assert.deepEqual([bad.status, bad.body.error?.code], [400, 'BAD_REQUEST']);
      assert.equal(await classifyCode('digits', added.body.version!), 'ok', 'refused removals removed nothing');

      const owner = await call('DELETE', '/api/models/digits', tokens.ann);
      assert.deepEqual([owner.status, owner.body.versions], [200, [added.body.version]], JSON.stringify(owner.body));
      for (const host of hosts) assert.equal(await serves(host.worker.pid, 'digits', added.body.version!), false);
      assert.equal(await client.hasService('classify.digits'), false, 'no version left: no worker offers the model');
      const twice = await call('DELETE', `/api/models/digits/versions/${added.body.version}`, tokens.ann);
      assert.deepEqual([twice.status, twice.body.error?.code], [404, 'UNKNOWN_MODEL']);
      const audit = (await store.listAudit()).filter((e) => e.action === 'model.remove');
      assert.deepEqual(audit.map((e) => [e.user, e.target]), [['ann', `digits@${added.body.version}`]]);
    } finally {
      await web.close();
      await store.close();
    }
  });

  it('removes a version from a local repository offline (--models DIR): a tombstone, and the list no longer shows it', async () => {
    const dir = await tempDir('zerve-removal-offline-');
    folders.push(dir);
    for (let i = 0; i < 2; i++) assert.equal((await runCli(['models', 'add', 'mnist', MNIST_FILE, '--channels', 'grey', '--logits', '--models', dir.path], ENV)).code, 0);
    const removed = await runCli(['models', 'remove', 'mnist', '--version', '1', '--models', dir.path], ENV);
    assert.equal(removed.code, 0, removed.stderr);
    const listed = await runCli(['models', 'list', '--json', '--models', dir.path], ENV);
    assert.deepEqual(JSON.parse(listed.stdout), [{ name: 'mnist', versions: [{ version: '2' }] }]);
    assert.deepEqual(await readdir(join(dir.path, '.removed', 'mnist')), ['1']);
    const again = await runCli(['models', 'remove', 'mnist', '--version', '1', '--models', dir.path], ENV);
    assert.match(again.stderr, /UNKNOWN_MODEL/);
  });
});
