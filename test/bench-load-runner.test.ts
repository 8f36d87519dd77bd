import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { runLoad } from '../scripts/bench/load-runner.ts';
import { median, percentile } from '../scripts/bench/percentile.ts';

/** Closed loops whose every request takes longer than the measured window, as /v2 at concurrency 1000 does. */
const slow = () => sleep(150);

describe('benchmark load runner', () => {
  it('times no request when every request outlasts a fixed window (the reason for minLatencies)', async () => {
    const result = await runLoad(slow, { concurrency: 4, warmUpMs: 20, durationMs: 40 });
    assert.equal(result.timed, 0);
    assert.ok(Number.isNaN(result.p50Ms));
    assert.equal(result.durationMs, 40);
  });

  it('holds the window open until minLatencies requests started and ended inside it, and rates over that window', async () => {
    const result = await runLoad(slow, { concurrency: 4, warmUpMs: 20, durationMs: 40, minLatencies: 4 });
    assert.ok(result.timed >= 4, `timed ${result.timed}`);
    // Node's timers may fire up to a millisecond before 150 ms by performance.now().
    assert.ok(result.p50Ms >= 145 && result.p99Ms >= result.p50Ms, `p50 ${result.p50Ms} ms`);
    assert.ok(result.durationMs > 40, 'the window grew past its planned end');
    assert.ok(result.completed >= result.timed);
    assert.equal(result.perSecond, (result.completed * 1000) / result.durationMs);
  });

  it('measures the CPU per task of the processes it is given, and none without them', async () => {
    const measured = await runLoad(slow, { concurrency: 2, warmUpMs: 0, durationMs: 20, cpuPids: [process.pid] });
    assert.equal(typeof measured.cpuMsPerTask, 'number');
    const plain = await runLoad(slow, { concurrency: 2, warmUpMs: 0, durationMs: 20 });
    assert.equal(plain.cpuMsPerTask, undefined);
  });

  it('never holds the window open past maxDurationMs', async () => {
    const result = await runLoad(slow, { concurrency: 2, warmUpMs: 0, durationMs: 20, minLatencies: 1000, maxDurationMs: 200 });
    assert.equal(result.durationMs, 200);
    assert.ok(result.timed < 1000);
  });
});

describe('benchmark percentile', () => {
  it('takes the nearest rank, and gives NaN for no data', () => {
    assert.equal(percentile([1, 2, 3, 4], 0.5), 2);
    assert.equal(percentile([1, 2, 3, 4], 0.99), 4);
    assert.ok(Number.isNaN(percentile([], 0.5)));
  });

  it('leaves NaN out of a median, and gives NaN when nothing is left', () => {
    assert.equal(median([3, Number.NaN, 1, 2]), 2);
    assert.equal(median([4, 1]), 2.5);
    assert.ok(Number.isNaN(median([Number.NaN])));
  });
});
