import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Broker } from '../broker/broker.ts';
import type { JobStatus } from '../shared/jobs.ts';
import { encodeJson } from '../shared/messages.ts';
import { WebApp } from '../webapp/web-app.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { JOBS_SUBMIT } from '../shared/jobs.ts';
import { TEST_ENV, TEST_HEARTBEAT_MS, fixtureImage, nextWorker, spawnWorker, startBroker, tempDir, type CliProcess } from './helpers/cluster.ts';
import { squeezenetRepository, testLogger } from './fixtures/webapp-cluster.ts';
import { TestPostgres, skipUnlessPostgres } from './helpers/postgres.ts';
import pg from 'pg';

const JOBS_PROCESS = fileURLToPath(new URL('./fixtures/jobs-worker-process.ts', import.meta.url));
const kitten = readFileSync(fixtureImage('kitten.png'));

/** `classify.gate`: holds every request until the test opens the gate; emits `'request'` per request received. */
class GateWorker extends EventEmitter {
  readonly connection: WorkerConnection;
  received = 0;
  private open!: () => void;
  private readonly opened = new Promise<void>((resolve) => (this.open = resolve));

  constructor(broker: Broker) {
    super();
    this.connection = new WorkerConnection(
      ['classify.gate'],
      async () => {
        this.received++;
        this.emit('request', this.received);
        await this.opened;
        return [encodeJson({ model: 'gate', version: '1', predictions: [{ index: 0, label: 'open', probability: 1 }], timings: {} })];
      },
      { connect: broker.backendEndpoint, heartbeatIntervalMs: TEST_HEARTBEAT_MS, capacity: 4, kind: 'gate' },
      testLogger,
    );
    this.connection.start();
  }

  /** Resolves when request number `n` has arrived. */
  request(n: number): Promise<void> {
    if (this.received >= n) return Promise.resolve();
    return new Promise((resolve) => {
      const listener = (count: number) => {
        if (count < n) return;
        this.off('request', listener);
        resolve();
      };
      this.on('request', listener);
    });
  }

  release(): void {
    this.open();
  }
}

function spawnJobs(broker: Broker, data: string, store: string[] = []): { child: ChildProcess; registered: Promise<unknown> } {
  const child = spawn(process.execPath, ['--import', 'tsx', JOBS_PROCESS, broker.backendEndpoint, broker.frontendEndpoint, data, ...store], {
    env: TEST_ENV,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const registered = nextWorker(broker, (w) => w.pid === child.pid && w.services.includes(JOBS_SUBMIT));
  return { child, registered };
}

async function kill(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
}

/** Reads a job's events to the end and returns the final status. */
async function finalStatus(web: string, id: string): Promise<JobStatus> {
  const response = await fetch(new URL(`/api/jobs/${id}/events`, web));
  assert.equal(response.status, 200);
  const done = (await response.text()).split('\n\n').find((block) => block.startsWith('event: done'));
  assert.ok(done, 'the event stream ends with done');
  return JSON.parse(done.split('\ndata: ')[1]!) as JobStatus;
}

async function submit(web: string, model: string): Promise<string> {
  const response = await fetch(new URL(`/api/jobs?model=${model}`, web), {
    method: 'POST',
    body: new Uint8Array(kitten),
    headers: { 'content-type': 'image/png' },
  });
  assert.equal(response.status, 202);
  return ((await response.json()) as { id: string }).id;
}

describe('job durability across restarts', function () {
  this.timeout(30_000);
  let broker: Broker;
  let data: { path: string; remove: () => Promise<void> };
  let gate: GateWorker;
  let jobs: ChildProcess | undefined;
  let web: WebApp | undefined;
  let inference: CliProcess | undefined;

  const startWeb = async () => {
    await web?.close();
    web = new WebApp({ broker: broker.frontendEndpoint, http: 0, eventsPollMs: 50, infoCacheMs: 100 }, testLogger);
    return web.start();
  };

  beforeEach(async () => {
    data = await tempDir('zerve-jobs-durability-');
    broker = await startBroker();
    gate = new GateWorker(broker);
    const spawned = spawnJobs(broker, data.path);
    jobs = spawned.child;
    await Promise.all([spawned.registered, nextWorker(broker, (w) => w.services.includes('classify.gate'))]);
  });
  afterEach(async () => {
    gate.release();
    await web?.close();
    web = undefined;
    await kill(jobs, 'SIGTERM');
    await inference?.kill('SIGTERM');
    inference = undefined;
    await gate.connection.close();
    await broker.close();
    await data.remove();
  });

  it('resolves a ticket after the web app and the jobs worker were killed mid-job', async () => {
    const id = await submit(await startWeb(), 'gate');
    await gate.request(1);
    await kill(jobs); // SIGKILL with the job running
    await web!.close(); // and the web app goes too
    const spawned = spawnJobs(broker, data.path);
    jobs = spawned.child;
    await spawned.registered;
    await gate.request(2); // the new jobs worker found the job left running and sent it again
    gate.release();
    const status = await finalStatus(await startWeb(), id);
    assert.equal(status.state, 'succeeded');
    assert.equal(status.attempts, 2);
    assert.equal((status.result as { predictions: { label: string }[] }).predictions[0]!.label, 'open');
  });

  it('resolves a ticket across a broker restart, and then classifies a kitten as a tabby', async () => {
    const webUrl = await startWeb();
    const id = await submit(webUrl, 'gate');
    await gate.request(1);
    const { frontendEndpoint, backendEndpoint } = broker;
    await broker.close(); // the request in flight is lost with the broker
    broker = await startBroker({ frontend: frontendEndpoint, backend: backendEndpoint });
    const back = Promise.all([
      nextWorker(broker, (w) => w.services.includes(JOBS_SUBMIT)),
      nextWorker(broker, (w) => w.services.includes('classify.gate')),
    ]);
    await back; // both workers re-registered by themselves
    await gate.request(2); // the jobs worker timed out on the lost request and tried again
    gate.release();
    const status = await finalStatus(webUrl, id);
    assert.equal(status.state, 'succeeded');
    assert.ok(status.attempts >= 2);

    inference = await spawnWorker(broker, ['inference', '--models', await squeezenetRepository(), '--threads', '1']);
    const tabby = await finalStatus(webUrl, await submit(webUrl, 'squeezenet'));
    assert.equal((tabby.result as { predictions: { label: string }[] }).predictions[0]!.label, 'tabby, tabby cat');
  });
});

describe('jobs services sharing a PostgreSQL store', function () {
  this.timeout(60_000);
  let server: TestPostgres | undefined;
  let broker: Broker;
  let data: { path: string; remove: () => Promise<void> };
  let gate: GateWorker;
  let services: ChildProcess[] = [];
  let webs: WebApp[] = [];

  before(async function () {
    skipUnlessPostgres(this);
    server = await TestPostgres.start();
  });
  after(() => server?.close());
  beforeEach(async () => {
    data = await tempDir('zerve-jobs-shared-');
    broker = await startBroker();
    gate = new GateWorker(broker);
    const spawned = [spawnJobs(broker, data.path, [server!.url, '1000']), spawnJobs(broker, data.path, [server!.url, '1000'])];
    services = spawned.map((s) => s.child);
    await Promise.all([...spawned.map((s) => s.registered), nextWorker(broker, (w) => w.services.includes('classify.gate'))]);
  });
  afterEach(async () => {
    gate.release();
    await Promise.all(webs.map((w) => w.close()));
    webs = [];
    await Promise.all(services.map((child) => kill(child, 'SIGTERM')));
    await gate.connection.close();
    await broker.close();
    await data.remove();
  });

  const startWeb = async (): Promise<string> => {
    const web = new WebApp({ broker: broker.frontendEndpoint, http: 0, eventsPollMs: 50, infoCacheMs: 100 }, testLogger);
    webs.push(web);
    return web.start();
  };

  it('finishes a job through the other service, once, when the one running it is SIGKILLed; its events stream from any web app', async () => {
    const [webA, webB] = await Promise.all([startWeb(), startWeb()]);
    const id = await submit(webA, 'gate');
    await gate.request(1);
    const db = new pg.Client({ connectionString: server!.url });
    await db.connect();
    let holder: string;
    try {
      holder = (await db.query<{ lease_owner: string }>('SELECT lease_owner FROM jobs WHERE id = $1', [id])).rows[0]!.lease_owner;
    } finally {
      await db.end();
    }
    const pid = Number(holder.split('/')[1]);
    const victim = services.find((child) => child.pid === pid);
    assert.ok(victim, `the lease holder ${holder} is one of the two services`);
    await kill(victim); // SIGKILL with the job running
    await gate.request(2); // the survivor took the job over when its lease ran out
    gate.release();
    const status = await finalStatus(webB, id);
    assert.equal(status.state, 'succeeded');
    assert.equal(status.attempts, 2, 'one attempt per service: the survivor ran it once');
    assert.equal(gate.received, 2);
    assert.equal((status.result as { predictions: { label: string }[] }).predictions[0]!.label, 'open');
  });
});
