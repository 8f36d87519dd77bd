import assert from 'node:assert/strict';
import { AutoscalePolicy, DEFAULT_AUTOSCALE_POLICY_OPTIONS, parseAutoscaleBounds, type AutoscalePolicyOptions } from '../scripts/autoscale-policy.ts';
import { rejectsWith } from './helpers/error-code.ts';

/** A policy on a clock the test moves: every `tick` observes one load sample and asks for a decision. */
function drive(options: Partial<AutoscalePolicyOptions> = {}) {
  let now = 0;
  const policy = new AutoscalePolicy({ min: 1, max: 4, upscaleDelayMs: 1000, downscaleDelayMs: 5000, lookBackMs: 1000, ...options }, () => now);
  let workers = policy.options.min;
  const decisions: { at: number; to: number; direction: string }[] = [];
  const tick = (load: number, ms = 100, capacity = 1) => {
    now += ms;
    policy.observe(load, capacity);
    const decision = policy.decide(workers);
    if (decision) {
      decisions.push({ at: now, to: decision.to, direction: decision.direction });
      workers = decision.to;
    }
  };
  return { policy, tick, decisions, workers: () => workers, now: () => now };
}

describe('autoscale policy', () => {
  it('grows once the load has stayed above the target for upscaleDelayMs, to what the load needs', () => {
    const p = drive();
    for (let i = 0; i < 9; i++) p.tick(20);
    assert.equal(p.decisions.length, 0, 'not before the delay');
    for (let i = 0; i < 3; i++) p.tick(20);
    assert.deepEqual(p.decisions.map((d) => [d.direction, d.to]), [['up', 4]]);
    assert.ok(p.decisions[0]!.at >= 1000);
  });

  it('scales nothing for one spike inside the look-back window', () => {
    const p = drive();
    for (let i = 0; i < 50; i++) p.tick(i === 20 ? 500 : 1);
    assert.deepEqual(p.decisions, []);
  });

  it('shrinks after downscaleDelayMs below the target, only as far as keeps the load inside the band', () => {
    const p = drive();
    for (let i = 0; i < 20; i++) p.tick(20);
    assert.equal(p.workers(), 4);
    for (let i = 0; i < 49; i++) p.tick(3);
    assert.equal(p.workers(), 4, 'not before the delay');
    for (let i = 0; i < 20; i++) p.tick(3);
    // 3 requests, target 2 per worker less the 10% band: 2 workers (1.5 each), not 1 (3 each).
    assert.equal(p.workers(), 2);
    for (let i = 0; i < 200; i++) p.tick(0);
    assert.equal(p.workers(), 1);
    assert.deepEqual(p.decisions.map((d) => d.direction), ['up', 'down', 'down']);
  });

  it('leaves the count alone at a steady load near the target, noise included', () => {
    for (const workers of [1, 2, 3]) {
      const p = drive({ min: workers });
      for (let i = 0; i < 2000; i++) p.tick(workers * 2 * (1 + 0.08 * Math.sin(i / 3)));
      assert.deepEqual(p.decisions, [], `${workers} worker(s)`);
    }
  });

  it('counts load per unit of capacity: 2 per unit, so 4 on one worker of capacity 2 is on target', () => {
    const p = drive();
    for (let i = 0; i < 100; i++) p.tick(4, 100, 2);
    assert.deepEqual(p.decisions, []);
    assert.equal(p.policy.loadPerCapacity(1), 2);
  });

  it('returns to the bounds at once: below min grows, above max shrinks', () => {
    const p = drive({ min: 2, max: 3 });
    const policy = p.policy;
    policy.observe(0, 1);
    assert.deepEqual(policy.decide(1), { direction: 'up', from: 1, to: 2, reason: 'below the minimum of 2' });
    assert.deepEqual(policy.decide(5), { direction: 'down', from: 5, to: 2, reason: 'above the maximum of 3' });
  });

  it('documents defaults suited to one host: target 2, grow after 5 s, shrink after 2 min, 10 s look-back', () => {
    assert.deepEqual(
      [DEFAULT_AUTOSCALE_POLICY_OPTIONS.targetPerCapacity, DEFAULT_AUTOSCALE_POLICY_OPTIONS.upscaleDelayMs, DEFAULT_AUTOSCALE_POLICY_OPTIONS.downscaleDelayMs, DEFAULT_AUTOSCALE_POLICY_OPTIONS.lookBackMs],
      [2, 5000, 120_000, 10_000],
    );
  });

  it('refuses bounds and options that cannot work with BAD_CONFIG', async () => {
    for (const text of ['0:4', '3:2', '4', 'a:b', '1:', '-1:2']) {
      await rejectsWith((async () => parseAutoscaleBounds(text))(), 'BAD_CONFIG');
    }
    assert.deepEqual(parseAutoscaleBounds(' 1:4 '), { min: 1, max: 4 });
    for (const options of [{ min: 0 }, { min: 3, max: 2 }, { targetPerCapacity: 0 }, { lookBackMs: -1 }, { upscaleDelayMs: Number.NaN }, { tolerance: 1 }]) {
      await rejectsWith((async () => new AutoscalePolicy(options))(), 'BAD_CONFIG');
    }
  });

  it('ignores samples that are not loads (negative, NaN, no capacity)', () => {
    const p = drive();
    p.policy.observe(Number.NaN, 1);
    p.policy.observe(-5, 1);
    p.policy.observe(10, 0);
    assert.equal(p.policy.decide(1), undefined);
  });
});
