import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobStore, packFrames, unpackFrames } from '../workers/jobs/job-store.ts';

describe('jobs store', () => {
  let dir: string;
  let store: JobStore;
  const open = () => new JobStore({ file: join(dir, 'jobs.sqlite'), resultTtlMs: 60_000, maxProgressEntries: 3 });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'zerve-jobs-store-'));
    store = open();
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('packs and unpacks frames, empty ones included', () => {
    const frames = [Buffer.from('{}'), Buffer.alloc(0), Buffer.from([1, 2, 3])];
    assert.deepEqual(unpackFrames(packFrames(frames)), frames);
    assert.deepEqual(unpackFrames(packFrames([])), []);
  });

  it('keeps a submitted job across closing and reopening the file', () => {
    const { id, state } = store.submit('classify.m', [Buffer.from('{}'), Buffer.from('image')]);
    assert.equal(state, 'queued');
    store.close();
    store = open();
    const job = store.claim();
    assert.equal(job?.id, id);
    assert.deepEqual(job?.body.map(String), ['{}', 'image']);
    assert.equal(store.status(id)?.state, 'running');
  });

  it('hands out jobs oldest first and each only once', () => {
    const a = store.submit('s', [], {}, 1000);
    const b = store.submit('s', [], {}, 2000);
    assert.equal(store.claim(3000)?.id, a.id);
    assert.equal(store.claim(3000)?.id, b.id);
    assert.equal(store.claim(3000), undefined);
  });

  it('re-queues jobs left running, counting the attempt', () => {
    const { id } = store.submit('s', []);
    store.claim();
    store.close();
    store = open();
    assert.equal(store.requeueRunning(), 1);
    assert.equal(store.status(id)?.state, 'queued');
    assert.equal(store.claim()?.attempts, 2);
  });

  it('does not hand out a retried job before it is due', () => {
    const { id } = store.submit('s', [], {}, 1000);
    store.claim(1000);
    store.retry(id, 5000, { code: 'TIMEOUT', message: 'no reply' });
    assert.equal(store.claim(4999), undefined);
    assert.equal(store.nextDueAt(), 5000);
    assert.equal(store.claim(5000)?.id, id);
  });

  it('stores progress, keeping only the newest entries', () => {
    const { id } = store.submit('s', []);
    store.claim();
    for (let i = 1; i <= 5; i++) assert.equal(store.addProgress(id, [Buffer.from(JSON.stringify({ step: i }))]), i);
    const status = store.status(id)!;
    assert.equal(status.progressSeq, 5);
    assert.deepEqual(status.progress.map((p) => p.data), [{ step: 3 }, { step: 4 }, { step: 5 }]);
    assert.deepEqual(store.status(id, 4)!.progress.map((p) => p.seq), [5]);
  });

  it('records a result and never lets a canceled job succeed', () => {
    const a = store.submit('s', []);
    const b = store.submit('s', []);
    store.claim();
    store.claim();
    assert.equal(store.succeed(a.id, [Buffer.from('{"ok":true}')]), true);
    assert.deepEqual(store.status(a.id)?.result, { ok: true });
    assert.equal(store.cancel(b.id)?.state, 'canceled');
    assert.equal(store.succeed(b.id, [Buffer.from('{}')]), false);
    assert.equal(store.addProgress(b.id, [Buffer.from('{}')]), undefined);
    assert.equal(store.status(b.id)?.failure?.code, 'CANCELED');
    assert.equal(store.cancel(a.id)?.state, 'succeeded', 'a finished job stays as it is');
  });

  it('removes finished jobs once their time is up, and only those', () => {
    const done = store.submit('s', [], {}, 0);
    const waiting = store.submit('s', [], {}, 0);
    store.claim(0);
    store.fail(done.id, { code: 'BAD_IMAGE', message: 'corrupt' }, 1000);
    assert.equal(store.status(done.id, 0, 1000 + 59_999)?.failure?.code, 'BAD_IMAGE');
    assert.equal(store.status(done.id, 0, 1000 + 60_000), undefined, 'an expired job is unknown at once');
    assert.equal(store.purgeExpired(1000 + 60_000), 1);
    assert.equal(store.status(waiting.id, 0, 10_000_000)?.state, 'queued');
  });

  it('answers undefined for an unknown id', () => {
    assert.equal(store.status('nope'), undefined);
    assert.equal(store.cancel('nope'), undefined);
  });
});
