import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ZerveError } from '../shared/errors.ts';
import { JOBS_CANCEL, JOBS_STATUS, JOBS_SUBMIT, type JobStatus, type JobTicket } from '../shared/jobs.ts';
import { JobService, jobKey, type JobServiceOptions, type JobTarget } from '../workers/jobs/job-service.ts';
import type { JobStore } from '../shared/store/job-store.ts';
import { SqliteJobStore } from '../shared/store/sqlite-job-store.ts';
import { openJobStore } from '../shared/store/open-job-store.ts';
import { TestPostgres, skipUnlessPostgres } from './helpers/postgres.ts';

type Chunk = { final: boolean; body: Buffer[] };
type Script = (body: Buffer[], signal: AbortSignal) => AsyncIterable<Chunk>;

/** A target whose behaviour per service is scripted by each test. */
class FakeTarget implements JobTarget {
  readonly scripts = new Map<string, Script>();
  active = 0;
  maxActive = 0;
  /** Whether each request was sent as resumable, in order. */
  readonly resumable: boolean[] = [];
  async *stream(service: string, body: Buffer[], options?: { signal?: AbortSignal; resumable?: boolean }): AsyncGenerator<Chunk> {
    this.resumable.push(options?.resumable ?? false);
    const script = this.scripts.get(service);
    if (!script) throw new ZerveError('NO_WORKERS');
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      yield* script(body, options?.signal ?? new AbortController().signal);
    } finally {
      this.active--;
    }
  }
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const final = (value: unknown): Chunk => ({ final: true, body: [json(value)] });
const silent = pino({ level: 'silent' });

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

describe('jobs service', () => {
  let dir: string;
  let store: JobStore;
  let target: FakeTarget;
  let service: JobService;
  const options: JobServiceOptions = {
    concurrency: 2,
    maxQueuedJobs: 100,
    maxJobBytes: 1024,
    requestTimeoutMs: 1000,
    maxAttempts: 3,
    retryDelayMs: 1,
    resultTtlMs: 60_000,
    leaseMs: 30_000,
  };

  const submit = async (body: unknown[], svc = JOBS_SUBMIT) =>
    JSON.parse(
      (await service.handle(svc, body.map((b) => (Buffer.isBuffer(b) ? b : json(b)))))[0]!.toString(),
    ) as JobTicket & JobStatus;
  const settled = (id: string) =>
    new Promise<string>((resolve) => {
      const listener = (jobId: string, state: string) => {
        if (jobId === id && state !== 'queued' && state !== 'running') {
          service.off('settled', listener);
          resolve(state);
        }
      };
      service.on('settled', listener);
    });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'zerve-jobs-service-'));
    store = new SqliteJobStore({ file: join(dir, 'jobs.sqlite'), resultTtlMs: 60_000, maxProgressEntries: 10 });
    target = new FakeTarget();
    service = new JobService(store, target, options, silent);
  });
  afterEach(async () => {
    await service.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers a ticket at once, then stores progress and the result', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    target.scripts.set('train', async function* (body) {
      yield { final: false, body: [json({ epoch: 1 })] };
      await gate;
      yield { final: false, body: [json({ epoch: 2 })] };
      yield final({ echo: body[0]!.toString() });
    });
    await service.start();
    const progressed = once(service, 'progress');
    const ticket = await submit([{ service: 'train' }, Buffer.from('payload')]);
    assert.equal(ticket.state, 'queued');
    await progressed;
    const running = await submit([{ id: ticket.id }], JOBS_STATUS);
    assert.equal(running.state, 'running');
    assert.deepEqual(running.progress.map((p) => p.data), [{ epoch: 1 }]);
    const done = settled(ticket.id);
    release();
    assert.equal(await done, 'succeeded');
    const status = await submit([{ id: ticket.id }], JOBS_STATUS);
    assert.deepEqual(status.result, { echo: 'payload' });
    assert.equal(status.progressSeq, 2);
    assert.deepEqual((await submit([{ id: ticket.id, since: 1 }], JOBS_STATUS)).progress.map((p) => p.seq), [2]);
  });

  it('retries a job whose target timed out, then succeeds', async () => {
    let calls = 0;
    target.scripts.set('flaky', async function* () {
      if (++calls === 1) throw new ZerveError('TIMEOUT');
      yield final({ ok: calls });
    });
    await service.start();
    const ticket = await submit([{ service: 'flaky' }]);
    assert.equal(await settled(ticket.id), 'succeeded');
    const status = await submit([{ id: ticket.id }], JOBS_STATUS);
    assert.equal(status.attempts, 2);
    assert.deepEqual(status.result, { ok: 2 });
  });

  it('fails a job at once on an error reply that retrying cannot cure', async () => {
    target.scripts.set('bad', async function* () {
      yield final({ error: { code: 'BAD_IMAGE', message: 'corrupt' } });
    });
    await service.start();
    const ticket = await submit([{ service: 'bad' }]);
    assert.equal(await settled(ticket.id), 'failed');
    const status = await submit([{ id: ticket.id }], JOBS_STATUS);
    assert.equal(status.failure?.code, 'BAD_IMAGE');
    assert.equal(status.attempts, 1);
  });

  it('gives up after maxAttempts transient failures', async () => {
    target.scripts.set('down', async function* () {
      throw new ZerveError('NO_WORKERS');
    });
    await service.start();
    const ticket = await submit([{ service: 'down' }]);
    assert.equal(await settled(ticket.id), 'failed');
    const status = await submit([{ id: ticket.id }], JOBS_STATUS);
    assert.equal(status.failure?.code, 'NO_WORKERS');
    assert.equal(status.attempts, 3);
  });

  it('cancels a running job, aborting its request', async () => {
    let started!: () => void;
    const isRunning = new Promise<void>((resolve) => (started = resolve));
    let sawAbort = false;
    target.scripts.set('slow', async function* (_body, signal) {
      started();
      try {
        await aborted(signal);
      } catch (err) {
        sawAbort = true;
        throw err;
      }
      yield final({});
    });
    await service.start();
    const ticket = await submit([{ service: 'slow' }]);
    await isRunning;
    const done = settled(ticket.id);
    const canceled = await submit([{ id: ticket.id }], JOBS_CANCEL);
    assert.equal(canceled.state, 'canceled');
    assert.equal(await done, 'canceled');
    assert.equal(sawAbort, true);
    assert.equal((await submit([{ id: ticket.id }], JOBS_STATUS)).failure?.code, 'CANCELED');
  });

  it('waits for the cancel handle of a job canceled before its target announced one, then forwards the cancel', async () => {
    let announce!: () => void;
    const queuedAtBroker = new Promise<void>((resolve) => (announce = resolve));
    let started!: () => void;
    const isRunning = new Promise<void>((resolve) => (started = resolve));
    const cancels: unknown[] = [];
    let stopped!: () => void;
    const stop = new Promise<void>((resolve) => (stopped = resolve));
    target.scripts.set('train', async function* () {
      started();
      await queuedAtBroker; // the request waits at the broker behind another training
      yield { final: false, body: [json({ type: 'started', cancelService: 'train.cancel.w1', experimentId: 'e1' })] };
      await stop;
      throw new ZerveError('CANCELED');
    });
    target.scripts.set('train.cancel.w1', async function* (body) {
      cancels.push(JSON.parse(body[0]!.toString()));
      stopped();
      yield final({ canceled: true });
    });
    await service.start();
    const ticket = await submit([{ service: 'train', announcesCancel: true }]);
    await isRunning;
    const done = settled(ticket.id);
    assert.equal((await submit([{ id: ticket.id }], JOBS_CANCEL)).state, 'canceled');
    announce();
    assert.equal(await done, 'canceled');
    assert.deepEqual(cancels, [{ experimentId: 'e1' }]);
  });

  it('answers the queued job again for a repeated key, and queues a new one once it has finished', async () => {
    target.scripts.set('work', async function* () {
      yield final({ ok: true });
    });
    const first = await submit([{ service: 'work', key: 'digits' }]);
    assert.equal((await submit([{ service: 'work', key: 'digits' }])).id, first.id);
    assert.notEqual((await submit([{ service: 'work', key: 'other' }])).id, first.id);
    const done = settled(first.id);
    await service.start();
    assert.equal(await done, 'succeeded');
    assert.notEqual((await submit([{ service: 'work', key: 'digits' }])).id, first.id);
  });

  it('sends every attempt of a keyed job with the key job:<id> in its header, as resumable', async () => {
    const headers: unknown[] = [];
    target.scripts.set('train', async function* (body) {
      headers.push(JSON.parse(body[0]!.toString()));
      if (headers.length === 1) throw new ZerveError('WORKER_LOST');
      yield final({ ok: true });
    });
    await service.start();
    const ticket = await submit([{ service: 'train', keyed: true }, { datasetId: 'mnist' }]);
    assert.equal(await settled(ticket.id), 'succeeded');
    const keyed = { datasetId: 'mnist', key: jobKey(ticket.id) };
    assert.deepEqual(headers, [keyed, keyed]);
    assert.deepEqual(target.resumable, [true, true]);
    const code = (p: Promise<unknown>) => p.then(() => 'none', (err: ZerveError) => err.code);
    assert.equal(await code(submit([{ service: 'train', keyed: true }, Buffer.from('not json')])), 'BAD_REQUEST');
    assert.equal(await code(submit([{ service: 'train', keyed: 'yes' }, { datasetId: 'mnist' }])), 'BAD_REQUEST');
  });

  it('runs at most `concurrency` jobs at once', async () => {
    target.scripts.set('work', async function* () {
      await new Promise((resolve) => setImmediate(resolve));
      yield final({});
    });
    await service.start();
    const tickets = await Promise.all(Array.from({ length: 6 }, () => submit([{ service: 'work' }])));
    await Promise.all(tickets.map((t) => settled(t.id)));
    assert.equal(target.maxActive, 2);
  });

  it('answers UNKNOWN_JOB for an unknown id, BAD_REQUEST for malformed requests', async () => {
    await service.start();
    const code = (p: Promise<unknown>) => p.then(() => 'none', (err: ZerveError) => err.code);
    assert.equal(await code(submit([{ id: 'no-such-job' }], JOBS_STATUS)), 'UNKNOWN_JOB');
    assert.equal(await code(submit([{ id: 'no-such-job' }], JOBS_CANCEL)), 'UNKNOWN_JOB');
    assert.equal(await code(submit([{}], JOBS_STATUS)), 'BAD_REQUEST');
    assert.equal(await code(submit([Buffer.from('not json')])), 'BAD_REQUEST');
    assert.equal(await code(submit([{ service: 'jobs.submit' }])), 'BAD_REQUEST');
    assert.equal(await code(submit([{ service: 'x', timeoutMs: -1 }])), 'BAD_REQUEST');
    assert.equal(await code(submit([{ service: 'x', maxAttempts: 11 }])), 'BAD_REQUEST');
    assert.equal(await code(submit([{ service: 'x', key: '' }])), 'BAD_REQUEST');
    assert.equal(await code(submit([{ service: 'x', announcesCancel: 'yes' }])), 'BAD_REQUEST');
    assert.equal(await code(submit([{ service: 'x' }, Buffer.alloc(2048)])), 'PAYLOAD_TOO_LARGE');
  });

  it('answers OVERLOADED when the queue is full', async () => {
    // not started: nothing is dispatched, so the queue only grows
    for (let i = 0; i < options.maxQueuedJobs; i++) await store.submit('x', []);
    await assert.rejects(submit([{ service: 'x' }]), (err: ZerveError) => err.code === 'OVERLOADED');
  });

  it('puts running jobs back in the queue on close and runs them on the next start', async () => {
    let started!: () => void;
    const isRunning = new Promise<void>((resolve) => (started = resolve));
    target.scripts.set('long', async function* (_body, signal) {
      started();
      await aborted(signal);
    });
    await service.start();
    const ticket = await submit([{ service: 'long' }]);
    await isRunning;
    await service.close();
    assert.equal((await store.status(ticket.id))?.state, 'queued');
    target.scripts.set('long', async function* () {
      yield final({ second: true });
    });
    service = new JobService(store, target, options, silent);
    const done = settled(ticket.id);
    await service.start();
    assert.equal(await done, 'succeeded');
  });
});

describe('jobs services sharing a PostgreSQL store (in one process)', () => {
  let server: TestPostgres | undefined;
  const closing: (() => Promise<void>)[] = [];
  const options: JobServiceOptions = { concurrency: 2, maxQueuedJobs: 100, maxJobBytes: 1024, requestTimeoutMs: 1000, maxAttempts: 3, retryDelayMs: 1, resultTtlMs: 60_000, leaseMs: 300_000 }; // lease beats 100 s apart: only the poll finds the job in time
  before(async function () {
    skipUnlessPostgres(this);
    this.timeout(30_000);
    server = await TestPostgres.start();
  });
  after(() => server?.close());
  afterEach(async () => {
    for (const close of closing.splice(0).reverse()) await close();
  });

  it('runs a job submitted through a service that is not dispatching on another one, which looks for it by itself', async () => {
    const open = async () => {
      const store = await openJobStore(server!.url, '.', { resultTtlMs: 60_000, maxProgressEntries: 10 }, silent);
      closing.push(() => store.close());
      return store;
    };
    const target = new FakeTarget();
    target.scripts.set('echo', async function* (body) {
      yield final({ echo: body[0]!.toString() });
    });
    const front = new JobService(await open(), target, options, silent); // answers requests, never started: dispatches nothing
    const back = new JobService(await open(), target, options, silent);
    closing.push(() => front.close(), () => back.close());
    await back.start(); // started before the job exists: it finds the job by polling
    const ticket = await front.submit({ service: 'echo' }, [Buffer.from('hi')]);
    const done = new Promise<string>((resolve) => back.on('settled', (id: string, state: string) => id === ticket.id && resolve(state)));
    assert.equal(await done, 'succeeded');
    assert.deepEqual((await front.status(ticket.id)).result, { echo: 'hi' });
  });
});
