import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { ZerveError } from '../shared/errors.ts';
import type { JobStatus } from '../shared/jobs.ts';
import { encodeJson } from '../shared/messages.ts';
import { WebApp } from '../webapp/web-app.ts';
import { JobsWorker } from '../workers/jobs/jobs-worker.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { eventually } from './helpers/eventually.ts';
import { TEST_HEARTBEAT_MS, fixtureImage, nextWorker, runCli, startBroker, tempDir } from './helpers/cluster.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';
import { TestPostgres, skipUnlessPostgres } from './helpers/postgres.ts';
import { inTransaction, openPostgresPool } from '../shared/store/postgres-pool.ts';
import pg from 'pg';

const kitten = readFileSync(fixtureImage('kitten.png'));
const JOBS = 100;

describe('jobs on a PostgreSQL store that goes away', function () {
  this.timeout(60_000);
  let server: TestPostgres | undefined;
  let broker: Broker;
  let data: { path: string; remove: () => Promise<void> };
  let target: WorkerConnection;
  let jobs: JobsWorker;
  let web: WebApp;
  let url: string;
  /** Replies of classify.quick wait for it. */
  let gate: Promise<void> = Promise.resolve();

  before(async function () {
    skipUnlessPostgres(this);
    server = await TestPostgres.start();
  });
  after(() => server?.close());
  beforeEach(async () => {
    data = await tempDir('zerve-jobs-faults-');
    broker = await startBroker();
    target = new WorkerConnection(
      ['classify.quick'],
      async () => (await gate, [encodeJson({ model: 'quick', version: '1', predictions: [{ index: 0, label: 'done', probability: 1 }], timings: {} })]),
      { connect: broker.backendEndpoint, heartbeatIntervalMs: TEST_HEARTBEAT_MS, capacity: 8, kind: 'quick' },
      testLogger,
    );
    const targetReady = nextWorker(broker, (w) => w.services.includes('classify.quick'));
    target.start();
    jobs = new JobsWorker(
      { connect: broker.backendEndpoint, broker: broker.frontendEndpoint, data: data.path, store: server!.url, leaseMs: 1000, concurrency: 4, heartbeatIntervalMs: TEST_HEARTBEAT_MS, retryDelayMs: 50 },
      testLogger,
    );
    const jobsReady = nextWorker(broker, (w) => w.services.includes('jobs.submit'));
    await jobs.start();
    await Promise.all([targetReady, jobsReady]);
    web = new WebApp({ broker: broker.frontendEndpoint, http: 0, eventsPollMs: 50, infoCacheMs: 100 }, testLogger);
    url = await web.start();
  });
  afterEach(async () => {
    await web.close();
    await jobs.close();
    await target.close();
    await broker.close();
    await data.remove();
  });

  const submit = () =>
    fetch(new URL('/api/jobs?model=quick', url), { method: 'POST', body: new Uint8Array(kitten), headers: { 'content-type': 'image/png' } });

  it('answers 503 STORE_UNAVAILABLE with Retry-After while PostgreSQL is down, and finishes every job once it is back', async () => {
    let open!: () => void;
    gate = new Promise((resolve) => (open = resolve));
    const accepted: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      const response = await submit();
      assert.equal(response.status, 202);
      accepted.push(((await response.json()) as { id: string }).id);
    }
    await server!.stop();
    const refused = await submit();
    assert.equal(refused.status, 503);
    assert.ok(Number(refused.headers.get('retry-after')) > 0, 'Retry-After is set');
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'STORE_UNAVAILABLE');
    const unknown = await fetch(new URL(`/api/jobs/${accepted[0]}`, url));
    assert.equal(unknown.status, 503);
    assert.equal(((await unknown.json()) as { error: { code: string } }).error.code, 'STORE_UNAVAILABLE');
    await server!.up();
    open(); // the jobs held running while the store was down now answer
    for (let i = 0; i < 5; i++) {
      const response = await submit(); // the pool reconnected by itself
      assert.equal(response.status, 202);
      accepted.push(((await response.json()) as { id: string }).id);
    }
    const statuses = await eventually('every job finished', async () => {
      const all = await Promise.all(accepted.map(async (id) => (await (await fetch(new URL(`/api/jobs/${id}`, url))).json()) as JobStatus));
      return all.every((s) => s.state === 'succeeded') && all;
    });
    assert.equal(statuses.length, JOBS + 5);
  });

  it('fails at start with a message naming the store for a wrong password, a closed port and a malformed URL', async () => {
    const bad = async (store: string): Promise<ZerveError> => {
      const worker = new JobsWorker({ connect: broker.backendEndpoint, broker: broker.frontendEndpoint, data: data.path, store }, testLogger);
      try {
        await worker.start();
      } catch (err) {
        return err as ZerveError;
      } finally {
        await worker.close();
      }
      assert.fail(`${store} opened`);
    };
    const wrongPassword = await bad(server!.urlFor('zerve', 'not-the-password'));
    assert.equal(wrongPassword.code, 'BAD_CONFIG');
    assert.match(wrongPassword.message, /store postgres:\/\/zerve:\*\*\*@127\.0\.0\.1/);
    const closed = await bad('postgres://zerve:x@127.0.0.1:1/zerve');
    assert.equal(closed.code, 'STORE_UNAVAILABLE');
    assert.match(closed.message, /store postgres:\/\/zerve:\*\*\*@127\.0\.0\.1:1\/zerve/);
    const noDatabase = await bad(server!.urlFor('nowhere'));
    assert.equal(noDatabase.code, 'BAD_CONFIG');
    const malformed = await bad('mysql://somewhere');
    assert.equal(malformed.code, 'BAD_CONFIG');
    assert.match(malformed.message, /store/);
  });

  it('exits at start with a message naming the store when zerve worker jobs cannot open it (a real process)', async () => {
    const args = ['worker', 'jobs', '--connect', broker.backendEndpoint, '--broker', broker.frontendEndpoint, '--data', data.path];
    const wrongPassword = await runCli([...args, '--store', server!.urlFor('zerve', 'not-the-password')]);
    assert.equal(wrongPassword.code, 1);
    assert.match(wrongPassword.stderr, /zerve: BAD_CONFIG: cannot open the store postgres:\/\/zerve:\*\*\*@127\.0\.0\.1:\d+\/zerve: /);
    assert.doesNotMatch(wrongPassword.stderr, /not-the-password/, 'the password is never printed');
    const malformed = await runCli([...args, '--store', 'mysql://db/zerve']);
    assert.equal(malformed.code, 1);
    assert.match(malformed.stderr, /zerve: BAD_CONFIG: the store .* is neither sqlite:FOLDER nor a postgres:\/\/ URL/);
  });

  it('leaves nothing half-written when the connection is cut in the middle of a transaction', async () => {
    const pool = await openPostgresPool(server!.url, {}, testLogger);
    const killer = new pg.Client({ connectionString: server!.url });
    await killer.connect();
    try {
      const { id } = await jobs.store.submit('classify.quick', []);
      const cut = inTransaction(pool, async (client) => {
        await client.query(`UPDATE jobs SET progress_seq = 99 WHERE id = $1`, [id]);
        await client.query(`INSERT INTO job_progress (job_id, seq, at, data) VALUES ($1, 99, 0, '\\x00')`, [id]);
        const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        await killer.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]); // the server drops this session mid-transaction
        await client.query('SELECT 1');
      });
      await assert.rejects(cut);
      const status = (await jobs.store.status(id))!;
      assert.equal(status.progressSeq, 0, 'the update was rolled back');
      assert.deepEqual(status.progress, [], 'and the insert with it');
      assert.equal((await pool.query('SELECT 1 AS one')).rows[0].one, 1, 'the pool replaced the broken connection');
    } finally {
      await killer.end();
      await pool.end();
    }
  });

  it('keeps serving requests that do not need the store while it is down', async () => {
    const client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 5000 });
    try {
      await server!.stop();
      const reply = await client.requestJson<{ predictions: { label: string }[] }>('classify.quick', [encodeJson({})]);
      assert.equal(reply.predictions[0]!.label, 'done');
    } finally {
      await client.close();
      await server!.up();
    }
  });
});
