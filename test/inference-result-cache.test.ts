import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { decodeHeader, type Prediction } from '../shared/messages.ts';
import { InferenceEngine, type VersionEvent } from '../workers/inference/inference-engine.ts';
import { addModelVersion } from '../shared/model-exchange/model-writer.ts';
import { ResultCache } from '../workers/inference/result-cache.ts';
import { errorCode } from './helpers/error-code.ts';
import { image, modelFile, waitFor } from './fixtures/inference-models.ts';
import { tempDir } from './helpers/cluster.ts';

const TABBY = 'tabby, tabby cat';

const addSqueezenet = (models: string) =>
  addModelVersion({
    models,
    name: 'squeezenet',
    file: modelFile('squeezenet-fp32'),
    labels: modelFile('squeezenet-fp32', 'labels.txt'),
    channels: 'bgr',
  });

describe('inference result cache', function () {
  this.timeout(30_000);
  let models: string;
  let engine: InferenceEngine;

  beforeEach(async () => {
    models = (await tempDir('zerve-cache-models-')).path;
    await addSqueezenet(models);
    engine = new InferenceEngine({ models, pollIntervalMs: 50 });
    await engine.start();
  });

  afterEach(async () => {
    await engine.close();
    await rm(models, { recursive: true, force: true });
  });

  it('answers an identical image from the cache without inference, and says so in the reply and timings', async () => {
    const first = await engine.classify('squeezenet', { topk: 3 }, image('kitten.png'));
    assert.equal(first.cached, undefined);
    assert.ok(first.timings.inferenceMs! > 0 && first.timings.decodeMs! > 0 && first.timings.hashMs! >= 0);
    // Another buffer with the same bytes: the key is the content, not the object.
    const second = await engine.classify('squeezenet', { topk: 3 }, Buffer.from(image('kitten.png')));
    assert.equal(second.cached, true);
    assert.deepEqual(second.predictions, first.predictions);
    assert.equal(second.predictions[0]!.label, TABBY);
    assert.deepEqual(Object.keys(second.timings).sort(), ['hashMs', 'totalMs'], 'no decode, no inference');
    assert.deepEqual(
      { hits: engine.cacheStats().cacheHits, misses: engine.cacheStats().cacheMisses, entries: engine.cacheStats().cacheEntries },
      { hits: 1, misses: 1, entries: 1 },
    );
  });

  it('keys on the bytes, the topk and the version: another image or another topk is classified', async () => {
    await engine.classify('squeezenet', { topk: 3 }, image('kitten.png'));
    const otherTopk = await engine.classify('squeezenet', { topk: 1 }, image('kitten.png'));
    const otherImage = await engine.classify('squeezenet', { topk: 3 }, image('fish.png'));
    const pinned = await engine.classify('squeezenet', { topk: 3, version: '1' }, image('kitten.png'));
    assert.deepEqual([otherTopk.cached, otherImage.cached, pinned.cached], [undefined, undefined, true]);
    assert.equal(otherTopk.predictions.length, 1);
    assert.equal(otherImage.predictions[0]!.label, 'tench, Tinca tinca');
    assert.deepEqual([engine.cacheStats().cacheHits, engine.cacheStats().cacheMisses], [1, 3]);
  });

  it('neither reads nor stores an answer when the header says cache: false', async () => {
    const skipped = await engine.classify('squeezenet', { cache: false }, image('kitten.png'));
    const again = await engine.classify('squeezenet', { cache: false }, image('kitten.png'));
    assert.deepEqual([skipped.cached, again.cached, again.timings.hashMs], [undefined, undefined, undefined]);
    assert.deepEqual([engine.cacheStats().cacheHits, engine.cacheStats().cacheMisses, engine.cacheStats().cacheEntries], [0, 0, 0]);
    assert.equal((await engine.classify('squeezenet', {}, image('kitten.png'))).cached, undefined, 'nothing was stored');
  });

  it('answers a new model version afresh and drops the old version answers with its session', async () => {
    await engine.classify('squeezenet', {}, image('kitten.png'));
    assert.equal(engine.cacheStats().cacheEntries, 1);
    const unloaded = waitFor<VersionEvent>(engine, 'unloaded', (e) => e.model === 'squeezenet' && e.version === '1');
    await addSqueezenet(models);
    await engine.refresh();
    await unloaded;
    assert.equal(engine.cacheStats().cacheEntries, 0, 'version 1 entries went with its session');
    const fresh = await engine.classify('squeezenet', {}, image('kitten.png'));
    assert.deepEqual([fresh.version, fresh.cached], ['2', undefined]);
    assert.equal((await engine.classify('squeezenet', {}, image('kitten.png'))).cached, true);
  });

  it('is off with resultCacheBytes 0, and refuses a negative size', async () => {
    const off = new InferenceEngine({ models, resultCacheBytes: 0 });
    try {
      await off.start();
      await off.classify('squeezenet', {}, image('kitten.png'));
      const again = await off.classify('squeezenet', {}, image('kitten.png'));
      assert.equal(again.cached, undefined);
      assert.deepEqual([off.cacheStats().cacheHits, off.cacheStats().cacheMisses], [0, 0]);
    } finally {
      await off.close();
    }
    assert.throws(() => new ResultCache(-1), (err: { code?: string }) => err.code === 'BAD_CONFIG');
  });

  it('refuses a header whose cache option is not a boolean with BAD_REQUEST', async () => {
    assert.equal(await errorCode(Promise.resolve().then(() => decodeHeader(Buffer.from('{"cache":"no"}')))), 'BAD_REQUEST');
    assert.equal(decodeHeader(Buffer.from('{"cache":false}')).cache, false);
  });
});

describe('result cache bound', () => {
  const predictions = (label: string): Prediction[] => [{ index: 1, label, probability: 0.5 }];

  it('keeps at most maxBytes, evicting the least recently used answer first', async () => {
    const cache = new ResultCache(1000);
    const keys = await Promise.all(
      ['a', 'b', 'c', 'd'].map((name) => cache.key({ model: 'm', version: '1', stamp: 's', topk: 1, image: Buffer.from(name) })),
    );
    cache.set(keys[0]!, predictions('a'.repeat(100)));
    cache.set(keys[1]!, predictions('b'.repeat(100)));
    assert.ok(cache.get(keys[0]!), 'a is used again, so b is now the oldest');
    cache.set(keys[2]!, predictions('c'.repeat(100)));
    const stats = cache.stats();
    assert.ok(stats.cacheBytes <= 1000, `${stats.cacheBytes} bytes held`);
    assert.equal(cache.get(keys[1]!), undefined, 'b was evicted');
    assert.ok(cache.get(keys[0]!) && cache.get(keys[2]!));
    cache.dropVersion('m', '1');
    assert.equal(cache.stats().cacheEntries, 0);
  });
});
