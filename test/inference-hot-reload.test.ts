import assert from 'node:assert/strict';
import { access, copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ZerveError } from '../shared/errors.ts';
import type { ClassifyReply } from '../shared/messages.ts';
import { InferenceEngine, type LatestEvent, type LoadFailedEvent, type VersionEvent } from '../workers/inference/inference-engine.ts';
import { ModelTombstones } from '../shared/model-exchange/model-tombstones.ts';
import { addModelVersion } from '../shared/model-exchange/model-writer.ts';
import { image, makeRepository, modelFile, waitFor } from './fixtures/inference-models.ts';

const TABBY = 'tabby, tabby cat';

describe('inference engine hot reload', () => {
  let models: string;
  let engine: InferenceEngine;

  beforeEach(async () => {
    models = await makeRepository();
    engine = new InferenceEngine({ models, pollIntervalMs: 50 });
    await engine.start();
  });

  afterEach(async () => {
    await engine.close();
    await rm(models, { recursive: true, force: true });
  });

  const addSqueezenet2 = () =>
    addModelVersion({
      models,
      name: 'squeezenet',
      file: modelFile('squeezenet-fp32'),
      labels: modelFile('squeezenet-fp32', 'labels.txt'),
      channels: 'bgr',
    });

  it('serves a new version as latest after the poll and still serves version 1 when pinned', async () => {
    const switched = waitFor<LatestEvent>(engine, 'latest', (e) => e.model === 'squeezenet');
    const released = waitFor<VersionEvent>(engine, 'unloaded', (e) => e.model === 'squeezenet' && e.version === '1');
    const added = await addSqueezenet2();
    assert.equal(added.version, '2');
    assert.deepEqual(await switched, { model: 'squeezenet', version: '2', previous: '1' });
    await released; // the old session is freed once idle

    const latest = await engine.classify('squeezenet', {}, image('kitten.png'));
    assert.equal(latest.version, '2');
    assert.equal(latest.predictions[0]!.label, TABBY);
    const pinned = await engine.classify('squeezenet', { version: '1' }, image('kitten.png'));
    assert.equal(pinned.version, '1');
    assert.equal(pinned.predictions[0]!.label, TABBY);
    const info = engine.models().find((m) => m.name === 'squeezenet')!;
    assert.equal(info.latest, '2');
    assert.equal(info.input.type, 'float32');
    assert.deepEqual(info.versions, ['1', '2']);
    assert.deepEqual(info.loaded, ['1', '2']);
    assert.deepEqual(engine.services(), ['classify.mnist', 'classify.squeezenet', 'classify.squeezenet-fp32']);
  });

  it('completes every request running during the switch', async () => {
    const switched = waitFor<LatestEvent>(engine, 'latest', (e) => e.model === 'squeezenet');
    const replies: ClassifyReply[] = [];
    let switchedYet = false;
    let afterSwitch = 0;
    // Three clients keep requests in flight until a few have been served by the new version.
    const client = async (): Promise<void> => {
      while (!switchedYet || afterSwitch < 6) {
        const reply = await engine.classify('squeezenet', { topk: 1 }, image('kitten.png'));
        replies.push(reply);
        if (switchedYet) afterSwitch++;
      }
    };
    const clients = [client(), client(), client()];
    await addSqueezenet2();
    await switched;
    switchedYet = true;
    await Promise.all(clients);
    assert.ok(replies.every((r) => r.predictions[0]!.label === TABBY));
    const versions = new Set(replies.map((r) => r.version));
    assert.deepEqual([...versions].sort(), ['1', '2']);
  });

  it('offers a model added while running', async () => {
    const offered = waitFor<string[]>(engine, 'services', (s) => s.includes('classify.digits'));
    await addModelVersion({ models, name: 'digits', file: modelFile('mnist'), logits: true });
    assert.deepEqual(await offered, [
      'classify.digits',
      'classify.mnist',
      'classify.squeezenet',
      'classify.squeezenet-fp32',
    ]);
    const reply = await engine.classify('digits', {}, image('digit.png'));
    assert.equal(reply.predictions[0]!.label, '8');
  });

  it('withdraws a model whose folder is removed', async () => {
    const withdrawn = waitFor<string[]>(engine, 'services', (s) => !s.includes('classify.mnist'));
    await rm(path.join(models, 'mnist'), { recursive: true });
    assert.deepEqual(await withdrawn, ['classify.squeezenet', 'classify.squeezenet-fp32']);
    await assert.rejects(engine.classify('mnist', {}, image('digit.png')), (err: ZerveError) => err.code === 'UNKNOWN_MODEL');
  });

  it('answers a request in flight when its version is removed (tombstone), then UNKNOWN_MODEL, and a restart does not bring it back', async () => {
    const unloaded = waitFor<VersionEvent>(engine, 'unloaded', (e) => e.model === 'mnist' && e.version === '1');
    // classify() takes its reference on the session before its first await: this request is in flight.
    const inFlight = engine.classify('mnist', {}, image('digit.png'));
    assert.equal(await new ModelTombstones(models).add({ name: 'mnist', version: '1' }), true);
    await engine.refresh();
    assert.equal((await inFlight).predictions[0]!.label, '8');
    await unloaded;
    await assert.rejects(engine.classify('mnist', {}, image('digit.png')), (err: ZerveError) => err.code === 'UNKNOWN_MODEL');
    // The files go, and a new version takes the next number, never the removed one.
    await assert.rejects(access(path.join(models, 'mnist', '1')));
    await addModelVersion({ models, name: 'mnist', file: modelFile('mnist'), logits: true });
    const restarted = new InferenceEngine({ models, pollIntervalMs: 50 });
    try {
      await restarted.start();
      assert.deepEqual(restarted.models().find((m) => m.name === 'mnist')?.versions, ['2'], 'a new version takes the next number; 1 stays removed');
    } finally {
      await restarted.close();
    }
  });

  it('ignores a version folder until its config.json is written', async () => {
    const dir = path.join(models, 'squeezenet', '2');
    await mkdir(dir);
    await copyFile(modelFile('squeezenet-fp32'), path.join(dir, 'model.onnx'));
    await engine.refresh();
    assert.equal((await engine.classify('squeezenet', {}, image('kitten.png'))).version, '1');
    const switched = waitFor<LatestEvent>(engine, 'latest', (e) => e.model === 'squeezenet');
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ input: { channels: 'bgr' } }));
    assert.equal((await switched).version, '2');
    const reply = await engine.classify('squeezenet', {}, image('kitten.png'));
    assert.equal(reply.version, '2');
    assert.equal(reply.predictions[0]!.label, '281', 'version 2 has no labels file');
  });

  it('keeps serving the previous version when a new one fails to load', async () => {
    const dir = path.join(models, 'squeezenet', '2');
    await mkdir(dir);
    await writeFile(path.join(dir, 'model.onnx'), 'not a model');
    const failed = waitFor<LoadFailedEvent>(engine, 'loadFailed', (e) => e.model === 'squeezenet');
    await writeFile(path.join(dir, 'config.json'), '{}');
    const event = await failed;
    assert.equal(event.version, '2');
    assert.equal(event.error.code, 'BAD_REQUEST');
    const reply = await engine.classify('squeezenet', {}, image('kitten.png'));
    assert.equal(reply.version, '1');
    await assert.rejects(
      engine.classify('squeezenet', { version: '2' }, image('kitten.png')),
      (err: ZerveError) => err.code === 'UNKNOWN_MODEL',
    );
  });

  it('does not offer a model whose only version fails to load', async () => {
    const dir = path.join(models, 'broken', '1');
    await mkdir(dir, { recursive: true });
    await copyFile(modelFile('squeezenet'), path.join(dir, 'model.onnx'));
    const failed = waitFor<LoadFailedEvent>(engine, 'loadFailed', (e) => e.model === 'broken');
    // 3 channels model, 1 channel config: the engine must refuse it rather than serve garbage.
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ input: { channels: 'grey' } }));
    await failed;
    await engine.refresh();
    assert.ok(!engine.services().includes('classify.broken'));
    await assert.rejects(engine.classify('broken', {}, image('kitten.png')), (err: ZerveError) => err.code === 'UNKNOWN_MODEL');
  });
});
