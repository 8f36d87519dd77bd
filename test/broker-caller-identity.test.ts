import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import type { BrokerOptions } from '../shared/config.ts';
import { generateKeyFiles, readPublicKey } from '../shared/curve-keys.ts';
import { JOBS_CANCEL, JOBS_STATUS, JOBS_SUBMIT, type JobStatus, type JobTicket } from '../shared/jobs.ts';
import { encodeJson } from '../shared/messages.ts';
import { encodeCaller, type CallerIdentity } from '../shared/protocol.ts';
import { SqliteExperimentStore } from '../shared/store/sqlite-experiment-store.ts';
import { RUNS_GET, RUNS_LIST, type ExperimentSummary } from '../shared/training.ts';
import { JobsWorker } from '../workers/jobs/jobs-worker.ts';
import { TrainingWorker } from '../workers/training/training-worker.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { TEST_HEARTBEAT_MS, nextWorker, tempDir } from './helpers/cluster.ts';
import { rejectsWith } from './helpers/error-code.ts';
import { eventually } from './helpers/eventually.ts';

const silent = pino({ level: 'silent' });
const WHOAMI = 'whoami';

describe('broker caller identity', function () {
  this.timeout(60_000);
  let dir: { path: string; remove: () => Promise<void> };
  let usersFile: string;
  const key = (name: string) => join(dir.path, 'keys', `${name}.key`);
  const pub = (name: string) => join(dir.path, 'keys', `${name}.pub`);
  let brokers: Broker[];
  let clients: ZerveClient[];
  let closers: Array<{ close(): Promise<void> }>;

  before(async () => {
    dir = await tempDir('zerve-identity-');
    for (const name of ['broker', 'user-a', 'user-b', 'web', 'root', 'stranger']) await generateKeyFiles(name, join(dir.path, 'keys'));
    usersFile = join(dir.path, 'client-users');
    await writeFile(
      usersFile,
      [
        '# key user [role]',
        `${readPublicKey(pub('user-a'))} a`,
        `${readPublicKey(pub('user-b'))} b member`,
        `${readPublicKey(pub('root'))} root admin`,
        `${readPublicKey(pub('web'))} *`,
      ].join('\n'),
    );
  });

  beforeEach(() => {
    brokers = [];
    clients = [];
    closers = [];
  });

  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(closers.map((c) => c.close()));
    await Promise.all(brokers.map((b) => b.close()));
  });

  after(async () => {
    await dir?.remove();
  });

  async function curveBroker(options: Partial<BrokerOptions> = {}): Promise<Broker> {
    const broker = new Broker(
      { frontend: 'tcp://127.0.0.1:0', backend: 'tcp://127.0.0.1:0', heartbeatIntervalMs: TEST_HEARTBEAT_MS, curveKey: key('broker'), clientAuth: 'curve', clientUsers: usersFile, ...options },
      silent,
    );
    brokers.push(broker);
    await broker.start();
    return broker;
  }

  /** A client with the named key; without one, a plain client (or, on a CURVE broker, a fresh key). */
  function client(broker: Broker, name?: string): ZerveClient {
    const curve = broker.options.curveKey !== '' ? { brokerKey: pub('broker'), clientAuth: 'curve', curveKey: name ? key(name) : '' } : {};
    const c = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 10_000, ...curve }, silent);
    clients.push(c);
    return c;
  }

  const curveWorker = (broker: Broker) =>
    broker.options.curveKey !== '' ? { curveKey: key('broker'), brokerKey: pub('broker'), clientAuth: 'curve' } : {};

  /** A worker that answers each request with the caller the broker stamped on it. */
  async function whoamiWorker(broker: Broker): Promise<void> {
    const registered = nextWorker(broker, (w) => w.services.includes(WHOAMI));
    const worker = new WorkerConnection([WHOAMI], async (_body, ctx) => [encodeJson(ctx.caller)], {
      connect: broker.backendEndpoint,
      heartbeatIntervalMs: TEST_HEARTBEAT_MS,
      caller: true,
      ...curveWorker(broker),
    }, silent);
    closers.push(worker);
    worker.start();
    await registered;
  }

  const whoami = (c: ZerveClient, header: object = {}, ...more: Buffer[]) => c.requestJson<CallerIdentity>(WHOAMI, [encodeJson(header), ...more]);

  it('stamps the user a client key maps to, over a forged header and a forged caller frame', async () => {
    const broker = await curveBroker();
    await whoamiWorker(broker);
    const forged = encodeCaller({ user: 'root', role: 'admin' });
    assert.deepEqual(await whoami(client(broker, 'user-a'), { asUser: 'root', asRole: 'admin' }, forged), { user: 'a', role: 'member' });
    assert.deepEqual(await whoami(client(broker, 'root')), { user: 'root', role: 'admin' });
  });

  it('lets only a trusted client speak for a user', async () => {
    const broker = await curveBroker();
    await whoamiWorker(broker);
    assert.deepEqual(await whoami(client(broker, 'web'), { asUser: 'b' }), { user: 'b', role: 'member' });
    assert.deepEqual(await whoami(client(broker, 'web'), {}), { user: 'anonymous', role: 'member' });
    assert.deepEqual(await whoami(client(broker, 'stranger'), { asUser: 'b', asRole: 'admin' }), { user: 'anonymous', role: 'member' });
    assert.deepEqual(await whoami(client(broker), { asUser: 'b' }), { user: 'anonymous', role: 'member' });
  });

  it('follows a change of the user map file on the connections it knows', async () => {
    const file = join(dir.path, `users-${Date.now()}`);
    await writeFile(file, `${readPublicKey(pub('user-a'))} a\n`);
    const broker = await curveBroker({ clientUsers: file });
    await whoamiWorker(broker);
    const a = client(broker, 'user-a');
    assert.deepEqual(await whoami(a), { user: 'a', role: 'member' });
    await writeFile(file, `${readPublicKey(pub('user-a'))} ada admin\n`);
    await eventually('the renamed user', async () => (await whoami(a)).user === 'ada');
    assert.deepEqual(await whoami(a), { user: 'ada', role: 'admin' });
  });

  it('calls a plain client on an open socket anonymous', async () => {
    const broker = new Broker({ frontend: 'tcp://127.0.0.1:0', backend: 'tcp://127.0.0.1:0', heartbeatIntervalMs: TEST_HEARTBEAT_MS }, silent);
    brokers.push(broker);
    await broker.start();
    await whoamiWorker(broker);
    assert.deepEqual(await whoami(client(broker), { asUser: 'a', asRole: 'admin' }), { user: 'anonymous', role: 'member' });
  });

  it('refuses a client user map without CURVE on the client socket', () => {
    assert.throws(() => new Broker({ curveKey: key('broker'), clientUsers: usersFile }, silent), { code: 'BAD_CONFIG' });
  });

  describe('jobs', () => {
    async function jobsCluster(): Promise<Broker> {
      const broker = await curveBroker();
      const registered = nextWorker(broker, (w) => w.services.includes(JOBS_CANCEL));
      const jobs = new JobsWorker(
        { connect: broker.backendEndpoint, broker: broker.frontendEndpoint, data: join(dir.path, `jobs-${Date.now()}`), heartbeatIntervalMs: TEST_HEARTBEAT_MS, ...curveWorker(broker) },
        silent,
      );
      closers.push(jobs);
      await jobs.start();
      await registered;
      return broker;
    }

    // A service nobody offers: the job stays queued or running, so it can be read and canceled.
    const submit = (c: ZerveClient) => c.requestJson<JobTicket>(JOBS_SUBMIT, [encodeJson({ service: 'nobody.offers.this' }), Buffer.from('x')]);

    it("refuses to read or cancel another user's job, and lets its owner and an admin", async () => {
      const broker = await jobsCluster();
      const [a, b, root, stranger] = [client(broker, 'user-a'), client(broker, 'user-b'), client(broker, 'root'), client(broker, 'stranger')];
      const { id } = await submit(a);
      await rejectsWith(b.requestJson(JOBS_STATUS, [encodeJson({ id })]), 'FORBIDDEN');
      await rejectsWith(b.requestJson(JOBS_CANCEL, [encodeJson({ id, asUser: 'a' })]), 'FORBIDDEN');
      await rejectsWith(stranger.requestJson(JOBS_CANCEL, [encodeJson({ id })]), 'FORBIDDEN');
      const status = await a.requestJson<JobStatus>(JOBS_STATUS, [encodeJson({ id })]);
      assert.equal(status.owner, 'a');
      assert.equal((await root.requestJson<JobStatus>(JOBS_STATUS, [encodeJson({ id })])).id, id);
      assert.equal((await a.requestJson<JobStatus>(JOBS_CANCEL, [encodeJson({ id })])).state, 'canceled');
    });

    it('follows the user a trusted client names, and leaves an anonymous job open to all', async () => {
      const broker = await jobsCluster();
      const [web, b, stranger] = [client(broker, 'web'), client(broker, 'user-b'), client(broker, 'stranger')];
      const { id } = await web.requestJson<JobTicket>(JOBS_SUBMIT, [encodeJson({ service: 'nobody.offers.this', asUser: 'a' }), Buffer.from('x')]);
      await rejectsWith(web.requestJson(JOBS_CANCEL, [encodeJson({ id, asUser: 'b' })]), 'FORBIDDEN');
      await rejectsWith(b.requestJson(JOBS_CANCEL, [encodeJson({ id })]), 'FORBIDDEN');
      assert.equal((await web.requestJson<JobStatus>(JOBS_STATUS, [encodeJson({ id, asUser: 'a' })])).owner, 'a');
      const open = await submit(stranger);
      const status = await b.requestJson<JobStatus>(JOBS_CANCEL, [encodeJson({ id: open.id })]);
      assert.equal(status.owner, undefined);
      assert.equal(status.state, 'canceled');
    });
  });

  describe('runs', () => {
    it("shows an identified user their own experiments and those without an owner, and refuses another's", async () => {
      const broker = await curveBroker();
      const folder = join(dir.path, `runs-${Date.now()}`);
      const store = new SqliteExperimentStore(folder);
      const start = (id: string, request: object) => store.startExperiment({ id, datasetId: 'd', request, seed: 1, host: 'h', pid: process.pid });
      await start('of-a', { owner: 'a' });
      await start('of-b', { owner: 'b' });
      await start('of-nobody', {});
      const registered = nextWorker(broker, (w) => w.services.includes(RUNS_LIST));
      const worker = new TrainingWorker(
        { connect: broker.backendEndpoint, data: folder, models: join(folder, 'models'), heartbeatIntervalMs: TEST_HEARTBEAT_MS, ...curveWorker(broker) },
        silent,
        store,
      );
      closers.push(worker);
      worker.start();
      await registered;
      const list = async (c: ZerveClient) => (await c.requestJson<ExperimentSummary[]>(RUNS_LIST, [encodeJson({})])).map((e) => e.id).sort();
      const [a, b, root, stranger] = [client(broker, 'user-a'), client(broker, 'user-b'), client(broker, 'root'), client(broker, 'stranger')];
      assert.deepEqual(await list(a), ['of-a', 'of-nobody']);
      assert.deepEqual(await list(root), ['of-a', 'of-b', 'of-nobody']);
      assert.deepEqual(await list(stranger), ['of-a', 'of-b', 'of-nobody']); // anonymous: as the web app asks (docs/auth.md)
      await rejectsWith(a.requestJson(RUNS_GET, [encodeJson({ id: 'of-b' })]), 'FORBIDDEN');
      assert.equal((await b.requestJson<{ id: string }>(RUNS_GET, [encodeJson({ id: 'of-b' })])).id, 'of-b');
    });
  });
});
