import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { DEFAULT_INFERENCE_OPTIONS } from '../shared/config.ts';
import type { ErrorCode } from '../shared/errors.ts';
import type { ClassifyReply } from '../shared/messages.ts';
import { InferenceEngine } from '../workers/inference/inference-engine.ts';
import { image, makeRepository, noiseBytes, pngBomb } from './fixtures/inference-models.ts';
import { rejectsWith } from './helpers/error-code.ts';

const TABBY = 'tabby, tabby cat';

function top1(reply: ClassifyReply): string {
  return reply.predictions[0]!.label;
}

describe('inference engine', () => {
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

  it('offers one classify service per model and describes each', () => {
    assert.deepEqual(engine.services(), ['classify.mnist', 'classify.squeezenet', 'classify.squeezenet-fp32']);
    const info = Object.fromEntries(engine.models().map((m) => [m.name, m]));
    assert.deepEqual(info.squeezenet!.input, {
      name: 'data_0',
      type: 'float16',
      shape: [1, 3, 224, 224],
      width: 224,
      height: 224,
      channels: 'bgr',
      layout: 'NCHW',
    });
    assert.equal(info.squeezenet!.labels, 1000);
    assert.equal(info.squeezenet!.output.classes, 1000);
    assert.equal(info['squeezenet-fp32']!.input.type, 'float32');
    assert.deepEqual(info.mnist!.input.shape, [1, 1, 28, 28]);
    assert.equal(info.mnist!.input.channels, 'grey');
    assert.equal(info.mnist!.output.kind, 'logits');
    assert.equal(info.mnist!.labels, 0);
    assert.equal(info.mnist!.latest, '1');
    assert.deepEqual(info.mnist!.versions, ['1']);
  });

  it('classifies kitten.png as a tabby cat with the float16 and the float32 model', async () => {
    const fp16 = await engine.classify('squeezenet', {}, image('kitten.png'));
    const fp32 = await engine.classify('squeezenet-fp32', {}, image('kitten.png'));
    for (const reply of [fp16, fp32]) {
      assert.equal(reply.version, '1');
      assert.equal(reply.predictions[0]!.index, 281);
      assert.equal(top1(reply), TABBY);
      assert.ok(reply.predictions[0]!.probability > 0.9);
      assert.equal(reply.predictions.length, 5, 'the config default topk');
      for (const key of ['decodeMs', 'inferenceMs', 'totalMs']) assert.ok(reply.timings[key]! >= 0, key);
    }
    assert.equal(fp16.model, 'squeezenet');
    assert.ok(Math.abs(fp16.predictions[0]!.probability - fp32.predictions[0]!.probability) < 0.01);
  });

  for (const name of ['kitten.png', 'fish.png', 'kitten-1600.jpg']) {
    it(`agrees between float16 and float32 on ${name}, with probabilities summing to 1`, async () => {
      const [fp16, fp32] = await Promise.all([
        engine.classify('squeezenet', { topk: 1000 }, image(name)),
        engine.classify('squeezenet-fp32', { topk: 1000 }, image(name)),
      ]);
      assert.equal(fp16.predictions[0]!.index, fp32.predictions[0]!.index);
      for (const reply of [fp16, fp32]) {
        assert.equal(reply.predictions.length, 1000);
        const sum = reply.predictions.reduce((total, p) => total + p.probability, 0);
        assert.ok(Math.abs(sum - 1) < 0.01, `sum ${sum}`);
      }
    });
  }

  it('names the classes of fish.png and kitten-1600.jpg', async () => {
    assert.equal(top1(await engine.classify('squeezenet', {}, image('fish.png'))), 'tench, Tinca tinca');
    assert.equal(top1(await engine.classify('squeezenet', {}, image('kitten-1600.jpg'))), TABBY);
  });

  it('honours the topk header, best first, and caps it at the class count', async () => {
    const three = await engine.classify('squeezenet', { topk: 3 }, image('kitten.png'));
    assert.equal(three.predictions.length, 3);
    const probabilities = three.predictions.map((p) => p.probability);
    assert.deepEqual(probabilities, [...probabilities].sort((a, b) => b - a));
    const digits = await engine.classify('mnist', { topk: 20 }, image('digit.png'));
    assert.equal(digits.predictions.length, 10);
    await rejectsWith(engine.classify('squeezenet', { topk: 0 }, image('kitten.png')), 'BAD_REQUEST');
  });

  it('applies softmax to the mnist logits and reads digit.png as 8', async () => {
    const reply = await engine.classify('mnist', { topk: 10 }, image('digit.png'));
    assert.equal(top1(reply), '8');
    assert.equal(reply.predictions[0]!.index, 8);
    const sum = reply.predictions.reduce((total, p) => total + p.probability, 0);
    assert.ok(Math.abs(sum - 1) < 1e-4, `sum ${sum}`);
    assert.ok(reply.predictions.every((p) => p.probability >= 0 && p.probability <= 1));
  });

  describe('bad input', () => {
    const cases: [string, () => Buffer, ErrorCode][] = [
      ['an empty buffer', () => Buffer.alloc(0), 'BAD_IMAGE'],
      ['a truncated PNG', () => image('kitten.png').subarray(0, 20_000), 'BAD_IMAGE'],
      ['a truncated JPEG', () => image('kitten-1600.jpg').subarray(0, 40_000), 'BAD_IMAGE'],
      ['random bytes', () => noiseBytes(), 'BAD_IMAGE'],
      ['a text file', () => Buffer.from('this is a text file, not an image\n'), 'BAD_IMAGE'],
      ['an SVG drawing', () => Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'), 'BAD_IMAGE'],
      ['a 30000x30000 PNG bomb', () => pngBomb(), 'IMAGE_TOO_LARGE'],
      ['a file over maxImageBytes', () => Buffer.alloc(DEFAULT_INFERENCE_OPTIONS.maxImageBytes + 1), 'IMAGE_TOO_LARGE'],
    ];
    for (const [what, bytes, code] of cases) {
      it(`answers ${code} for ${what}, then serves the next request`, async () => {
        await rejectsWith(engine.classify('squeezenet', {}, bytes()), code);
        assert.equal(top1(await engine.classify('squeezenet', {}, image('kitten.png'))), TABBY);
      });
    }

    it('rejects the PNG bomb from its header, without decoding', async () => {
      // The bomb holds one row of pixel data: decoded, it is truncated (BAD_IMAGE, as a small one
      // shows), so IMAGE_TOO_LARGE can only come from the header's dimensions.
      await rejectsWith(engine.classify('squeezenet', {}, pngBomb(300, 300)), 'BAD_IMAGE');
      await rejectsWith(engine.classify('squeezenet', {}, pngBomb()), 'IMAGE_TOO_LARGE');
    });

    it('answers UNKNOWN_MODEL for an unknown model and for an unknown version', async () => {
      await rejectsWith(engine.classify('resnet', {}, image('kitten.png')), 'UNKNOWN_MODEL');
      await rejectsWith(engine.classify('squeezenet', { version: '7' }, image('kitten.png')), 'UNKNOWN_MODEL');
      assert.equal(top1(await engine.classify('squeezenet', { version: '1' }, image('kitten.png'))), TABBY);
    });

    it('answers CANCELED when the signal is aborted', async () => {
      const controller = new AbortController();
      controller.abort();
      await rejectsWith(engine.classify('squeezenet', {}, image('kitten.png'), controller.signal), 'CANCELED');
    });
  });

  it('closes once, lets running requests finish, and refuses work afterwards', async () => {
    const running = engine.classify('squeezenet', {}, image('kitten-1600.jpg'));
    const first = engine.close();
    assert.equal(engine.close(), first);
    assert.equal(top1(await running), TABBY);
    await first;
    await rejectsWith(engine.classify('squeezenet', {}, image('kitten.png')), 'INTERNAL');
  });
});
