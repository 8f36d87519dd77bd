import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testLogger } from './fixtures/webapp-cluster.ts';
import { packFrames, unpackFrames, type JobStore } from '../shared/store/job-store.ts';
import { openJobStore } from '../shared/store/open-job-store.ts';
import { SQLITE_JOB_MIGRATIONS, SqliteJobStore } from '../shared/store/sqlite-job-store.ts';
import { TestPostgres, skipUnlessPostgres } from './helpers/postgres.ts';

const LOST = { code: 'WORKER_LOST', message: 'gone' } as const;

/** The same behaviour, said once, for each backend: `store()` opens one on the current test's database. */
for (const backend of ['sqlite', 'postgres'] as const) {
  describe(`jobs store (${backend})`, () => {
    let server: TestPostgres | undefined;
    let location: string;
    let dir: string;
    const opened: JobStore[] = [];
    let store: JobStore;
    let databases = 0;
    const open = async (maxProgressEntries = 3): Promise<JobStore> => {
      const s = await openJobStore(location, dir, { resultTtlMs: 60_000, maxProgressEntries }, testLogger);
      opened.push(s);
      return s;
    };

    before(async function () {
      if (backend !== 'postgres') return;
      skipUnlessPostgres(this);
      this.timeout(30_000);
      server = await TestPostgres.start();
    });
    after(() => server?.close());
    beforeEach(async () => {
      dir = mkdtempSync(join(tmpdir(), 'zerve-jobs-store-'));
      location = server ? await server.createDatabase(`jobs${++databases}`) : '';
      store = await open();
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
      rmSync(dir, { recursive: true, force: true });
    });

    it('packs and unpacks frames, empty ones included', () => {
      const frames = [Buffer.from('{}'), Buffer.alloc(0), Buffer.from([1, 2, 3])];
      assert.deepEqual(unpackFrames(packFrames(frames)), frames);
      assert.deepEqual(unpackFrames(packFrames([])), []);
    });

    it('keeps a submitted job across closing and reopening the store', async () => {
      const { id, state } = await store.submit('classify.m', [Buffer.from('{}'), Buffer.from('image')]);
      assert.equal(state, 'queued');
      await store.close();
      store = await open();
      const job = await store.claim(30_000);
      assert.equal(job?.id, id);
      assert.deepEqual(job?.body.map(String), ['{}', 'image']);
      assert.equal((await store.status(id))?.state, 'running');
    });

    it('hands out jobs oldest first and each only once', async () => {
      const a = await store.submit('s', [], {}, 1000);
      const b = await store.submit('s', [], {}, 2000);
      assert.equal((await store.claim(30_000, 3000))?.id, a.id);
      assert.equal((await store.claim(30_000, 3000))?.id, b.id);
      assert.equal(await store.claim(30_000, 3000), undefined);
    });

    it('never hands one job to two stores claiming at the same time', async () => {
      const other = await open();
      const ids = new Set<string>();
      for (let i = 0; i < 20; i++) ids.add((await store.submit('s', [Buffer.from(String(i))], {}, i)).id);
      const claimAll = async (s: JobStore): Promise<string[]> => {
        const got: string[] = [];
        for (let job = await s.claim(30_000); job; job = await s.claim(30_000)) got.push(job.id);
        return got;
      };
      const [mine, theirs] = await Promise.all([claimAll(store), claimAll(other)]);
      assert.deepEqual(new Set([...mine, ...theirs]), ids);
      assert.equal(mine.length + theirs.length, 20, 'no job was claimed twice');
    });

    it('re-queues jobs left running by a previous process, counting the attempt', async () => {
      const { id } = await store.submit('s', []);
      await store.claim(30_000);
      await store.close();
      store = await open();
      assert.deepEqual(await store.recoverAbandoned(5, LOST, { all: true }), { failed: [], requeued: 1 });
      assert.equal((await store.status(id))?.state, 'queued');
      assert.equal((await store.claim(30_000))?.attempts, 2);
    });

    it('takes over a running job only once its lease has run out, and the old holder can no longer finish it', async () => {
      const other = await open();
      const { id } = await store.submit('s', [], {}, 1000);
      await store.claim(5000, 1000);
      assert.deepEqual(await other.recoverAbandoned(5, LOST, { now: 5999 }), { failed: [], requeued: 0 });
      assert.deepEqual(await store.renewLeases([id], 5000, 5000), [id], 'the holder renews its lease');
      assert.deepEqual(await other.recoverAbandoned(5, LOST, { now: 9999 }), { failed: [], requeued: 0 });
      assert.deepEqual(await other.recoverAbandoned(5, LOST, { now: 10_001 }), { failed: [], requeued: 1 });
      const again = await other.claim(5000, 10_001);
      assert.equal(again?.id, id);
      assert.equal(again?.attempts, 2);
      assert.deepEqual(await store.renewLeases([id], 5000), [], 'the old holder lost its lease');
      assert.equal(await store.succeed(id, [Buffer.from('{"who":"old"}')]), false);
      assert.equal(await store.addProgress(id, [Buffer.from('{}')]), undefined);
      assert.equal(await other.succeed(id, [Buffer.from('{"who":"new"}')]), true);
      assert.deepEqual((await other.status(id))?.result, { who: 'new' });
    });

    it('fails an abandoned job that has used all its attempts', async () => {
      const { id } = await store.submit('s', [], { maxAttempts: 1 }, 0);
      await store.claim(100, 0);
      assert.deepEqual(await store.recoverAbandoned(5, LOST, { now: 1000 }), { failed: [id], requeued: 0 });
      assert.equal((await store.status(id, 0, 1000))?.failure?.code, 'WORKER_LOST');
    });

    it('does not hand out a retried job before it is due', async () => {
      const { id } = await store.submit('s', [], {}, 1000);
      await store.claim(30_000, 1000);
      await store.retry(id, 5000, { code: 'TIMEOUT', message: 'no reply' });
      assert.equal(await store.claim(30_000, 4999), undefined);
      assert.equal(await store.nextDueAt(), 5000);
      assert.equal((await store.claim(30_000, 5000))?.id, id);
    });

    it('answers the active job of a key instead of queueing another', async () => {
      const first = await store.submit('s', [], { key: 'k1' });
      assert.deepEqual(await store.submit('s', [], { key: 'k1' }), first);
      assert.notEqual((await store.submit('s', [], { key: 'k2' })).id, first.id);
      assert.equal(await store.count('queued'), 2);
    });

    it('stores progress, keeping only the newest entries', async () => {
      const { id } = await store.submit('s', []);
      await store.claim(30_000);
      for (let i = 1; i <= 5; i++) assert.equal(await store.addProgress(id, [Buffer.from(JSON.stringify({ step: i }))]), i);
      const status = (await store.status(id))!;
      assert.equal(status.progressSeq, 5);
      assert.deepEqual(status.progress.map((p) => p.data), [{ step: 3 }, { step: 4 }, { step: 5 }]);
      assert.deepEqual((await store.status(id, 4))!.progress.map((p) => p.seq), [5]);
    });

    it('records a result and never lets a canceled job succeed', async () => {
      const a = await store.submit('s', []);
      const b = await store.submit('s', []);
      await store.claim(30_000);
      await store.claim(30_000);
      assert.equal(await store.succeed(a.id, [Buffer.from('{"ok":true}')]), true);
      assert.deepEqual((await store.status(a.id))?.result, { ok: true });
      assert.equal((await store.cancel(b.id))?.state, 'canceled');
      assert.equal(await store.succeed(b.id, [Buffer.from('{}')]), false);
      assert.equal(await store.addProgress(b.id, [Buffer.from('{}')]), undefined);
      assert.equal((await store.status(b.id))?.failure?.code, 'CANCELED');
      assert.equal((await store.cancel(a.id))?.state, 'succeeded', 'a finished job stays as it is');
    });

    it('removes finished jobs once their time is up, and only those', async () => {
      const done = await store.submit('s', [], {}, 0);
      const waiting = await store.submit('s', [], {}, 0);
      await store.claim(30_000, 0);
      await store.fail(done.id, { code: 'BAD_IMAGE', message: 'corrupt' }, 1000);
      assert.equal((await store.status(done.id, 0, 1000 + 59_999))?.failure?.code, 'BAD_IMAGE');
      assert.equal(await store.status(done.id, 0, 1000 + 60_000), undefined, 'an expired job is unknown at once');
      assert.equal(await store.purgeExpired(1000 + 60_000), 1);
      assert.equal((await store.status(waiting.id, 0, 10_000_000))?.state, 'queued');
    });

    it('answers undefined for an unknown id', async () => {
      assert.equal(await store.status('nope'), undefined);
      assert.equal(await store.cancel('nope'), undefined);
    });

    it('migrates once when two processes open a new store together', async () => {
      const [a, b] = await Promise.all([open(), open()]);
      const { id } = await a.submit('s', []);
      assert.equal((await b.status(id))?.state, 'queued');
    });
  });
}

describe('jobs store migrations (sqlite)', () => {
  let dir: string;
  let store: SqliteJobStore | undefined;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'zerve-jobs-migrate-'));
  });
  afterEach(async () => {
    await store?.close();
    store = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it("upgrades a file the previous release wrote, losing nothing, and runs its jobs", async () => {
    const file = join(dir, 'jobs.sqlite');
    const old = new Database(file);
    old.exec(readFileSync(fileURLToPath(new URL('./fixtures/jobs-store-previous-schema.sql', import.meta.url)), 'utf8'));
    old.close();
    store = new SqliteJobStore({ file, resultTtlMs: 60_000, maxProgressEntries: 10 });
    const check = new Database(file, { readonly: true });
    try {
      assert.equal(check.pragma('user_version', { simple: true }), SQLITE_JOB_MIGRATIONS.length);
    } finally {
      check.close();
    }
    const running = (await store.status('old-running'))!;
    assert.equal(running.state, 'running');
    assert.deepEqual(running.progress.map((p) => p.data), [{ epoch: 1 }, { epoch: 2 }]);
    assert.deepEqual((await store.status('old-done'))?.result, { ok: true });
    assert.deepEqual(await store.submit('classify.squeezenet', [], { key: 'k-old' }), { id: 'old-queued', state: 'queued' }, 'keys still match');
    // A running job of the old release has no lease: it counts as abandoned.
    assert.deepEqual(await store.recoverAbandoned(5, { code: 'WORKER_LOST', message: 'gone' }), { failed: [], requeued: 1 });
    const first = (await store.claim(30_000))!;
    assert.equal(first.id, 'old-queued');
    assert.deepEqual(first.body.map(String), ['{}']);
    const second = (await store.claim(30_000))!;
    assert.equal(second.id, 'old-running');
    assert.equal(second.attempts, 2);
    assert.equal(await store.addProgress('old-running', [Buffer.from('{"epoch":3}')]), 3);
    assert.equal(await store.succeed('old-running', [Buffer.from('{"done":1}')]), true);
  });

  it('migrates an upgraded file no further when opened again', async () => {
    const file = join(dir, 'jobs.sqlite');
    store = new SqliteJobStore({ file, resultTtlMs: 60_000, maxProgressEntries: 10 });
    const { id } = await store.submit('s', []);
    await store.close();
    store = new SqliteJobStore({ file, resultTtlMs: 60_000, maxProgressEntries: 10 });
    assert.equal((await store.status(id))?.state, 'queued');
  });
});
