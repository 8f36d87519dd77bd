import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DEFAULT_BROKER_OPTIONS, DEFAULT_JOBS_OPTIONS, resolveOptions } from '../shared/config.ts';
import { ZerveError } from '../shared/errors.ts';
import { pino } from 'pino';
import { JobService, type JobTarget } from '../workers/jobs/job-service.ts';
import { SqliteJobStore } from '../shared/store/sqlite-job-store.ts';
import { runCli, tempDir } from './helpers/cluster.ts';

const isBadConfig = (pattern: RegExp) => (err: unknown) => err instanceof ZerveError && err.code === 'BAD_CONFIG' && pattern.test(err.message);

describe('start-up configuration errors', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    await dir.remove();
  });

  it('answers a variable that is not a number, a bad prefix map and a missing config file with BAD_CONFIG', () => {
    assert.throws(() => resolveOptions(DEFAULT_BROKER_OPTIONS, {}, { ZERVE_MAX_REQUEUES: 'twice' }), isBadConfig(/maxRequeues must be a number/));
    assert.throws(() => resolveOptions(DEFAULT_BROKER_OPTIONS, { maxDeadlineMs: 'train' }), isBadConfig(/prefix=number pairs/));
    assert.throws(() => resolveOptions(DEFAULT_BROKER_OPTIONS, { config: join(dir.path, 'missing.json') }), isBadConfig(/cannot read config file/));
  });

  it('answers the jobs store and service options out of range with BAD_CONFIG, not a RangeError', async () => {
    const file = join(dir.path, 'jobs.sqlite');
    assert.throws(() => new SqliteJobStore({ file, resultTtlMs: -1, maxProgressEntries: 1 }), isBadConfig(/resultTtlMs/));
    const store = new SqliteJobStore({ file, resultTtlMs: 1000, maxProgressEntries: 1 });
    try {
      const target: JobTarget = { stream: () => ({ [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true as const, value: undefined }) }) }) };
      const log = pino({ level: 'silent' });
      assert.throws(() => new JobService(store, target, { ...DEFAULT_JOBS_OPTIONS, concurrency: 0 }, log), isBadConfig(/concurrency/));
      assert.throws(() => new JobService(store, target, { ...DEFAULT_JOBS_OPTIONS, maxAttempts: 0 }, log), isBadConfig(/maxAttempts/));
    } finally {
      await store.close();
    }
  });

  it('makes the CLI refuse to start with BAD_CONFIG on stderr (real process)', async () => {
    const { code, stderr } = await runCli(['broker', '--frontend', 'tcp://127.0.0.1:0', '--backend', 'tcp://127.0.0.1:0', '--max-queued-per-service', 'lots']);
    assert.notEqual(code, 0);
    assert.match(stderr, /BAD_CONFIG: option maxQueuedPerService must be a number/);
  });
});
