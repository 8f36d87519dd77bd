import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { logger } from '../shared/logger.ts';
import { float32ToFloat16 } from '../shared/float16.ts';
import { preprocessForBackbone, squeezenetBackbone, type BackboneSpec } from '../workers/training/backbone.ts';
import { DatasetStore } from '../workers/training/dataset-store.ts';
import { PROBABILITIES_OUTPUT } from '../workers/training/onnx-export.ts';
import { runTraining, type TrainingResult } from '../workers/training/trainer.ts';
import type { TrainingRequest } from '../shared/training-request.ts';
import { photoVariants } from './helpers/photo-variants.ts';
import { fixtureImage, fixtureModel } from './helpers/cluster.ts';

const log = logger.child({ test: 'training-transfer' });

/** The fixtures' two squeezenets: float16 with a batch of 1, and float32 with a dynamic batch. */
const BACKBONES = ['squeezenet', 'squeezenet-fp32'] as const;
const backboneOf = (name: string): BackboneSpec => ({ ...squeezenetBackbone(join(fixtureModel(name), 'model.onnx')), name });

async function trainTransfer(root: string, datasetId: string, backbone: string, request: Partial<TrainingRequest> = {}): Promise<TrainingResult> {
  return runTraining(
    { datasetId, family: 'transfer', backbone, head: 'linear', epochs: 30, split: { kind: 'auto', validationFraction: 0.25 }, seed: 3, ...request },
    { options: { data: join(root, 'data'), models: join(root, 'models'), threads: 2 }, backbones: { [backbone]: backboneOf(backbone) } },
  );
}

for (const backboneName of BACKBONES) {
  describe(`training transfer learning on ${backboneName} embeddings`, function () {
    this.timeout(120_000);
    let root: string;
    let result: TrainingResult;

    before(async () => {
      root = await mkdtemp(join(tmpdir(), 'zerve-training-transfer-'));
      const folder = join(root, 'pets');
      for (const [label, file] of [['kitten', 'kitten.png'], ['fish', 'fish.png']] as const) {
        const photo = await readFile(fixtureImage(file));
        const images = await photoVariants(photo, 18, 0);
        await mkdir(join(folder, label), { recursive: true });
        await mkdir(join(folder, 'test', label), { recursive: true });
        for (const [i, img] of images.entries()) {
          await writeFile(join(folder, i < 12 ? label : join('test', label), `${i}.jpg`), img);
        }
      }
      const manifest = await new DatasetStore({ data: join(root, 'data') }).importFolder(folder);
      assert.equal(manifest.explicitTest, true);
      result = await trainTransfer(root, manifest.id, backboneName, {
        search: { mode: 'grid', params: ['learningRate=0.01,0.003'] },
        export: { name: 'pets' },
      });
      log.warn({ backboneName, testAccuracy: result.test.accuracy, imagesPerSecond: Math.round(result.featureImagesPerSecond), ms: Math.round(result.elapsedMs) }, 'transfer trained');
    });

    after(async () => {
      await rm(root, { recursive: true, force: true });
    });

    // The test images are other crops, flips and tints of the same two photos: near-duplicates
    // of the training images, so this shows the pipeline works, not that the head generalises.
    it('separates kittens from fish on near-duplicate variants of the training photos', () => {
      assert.equal(result.runs.length, 2);
      assert.deepEqual(result.classes, ['fish', 'kitten']);
      assert.equal(result.testRows.length, 12);
      assert.ok(result.test.accuracy >= 0.9, `test accuracy ${result.test.accuracy}`);
    });

    it('exports one merged ONNX graph, in the backbone\'s input type, that predicts like the trainer', async () => {
      assert.ok(result.exported);
      const config = JSON.parse(await readFile(join(result.exported.path, 'config.json'), 'utf8')) as { input: { channels: string; width: number } };
      assert.equal(config.input.channels, 'bgr');
      assert.equal(config.input.width, 224);
      const labels = (await readFile(join(result.exported.path, 'labels.txt'), 'utf8')).trim().split('\n');
      assert.deepEqual(labels, ['fish', 'kitten']);
      const backbone = backboneOf(backboneName);
      const dataset = await new DatasetStore({ data: join(root, 'data') }).open(result.datasetId);
      const plane = 3 * 224 * 224;
      const input = new Float32Array(result.testRows.length * plane);
      for (const [i, row] of result.testRows.entries()) input.set(await preprocessForBackbone(await dataset.read(row), backbone, 50_000_000), i * plane);
      const session = await ort.InferenceSession.create(result.exported.modelPath);
      try {
        assert.deepEqual(session.inputNames, ['data_0']);
        const dims = [result.testRows.length, 3, 224, 224];
        const float16 = backboneName === 'squeezenet';
        const tensor = float16 ? new ort.Tensor('float16', float32ToFloat16(input), dims) : new ort.Tensor('float32', input, dims);
        const output = (await session.run({ data_0: tensor }))[PROBABILITIES_OUTPUT];
        assert.equal(output.type, 'float32');
        const proba = output.data as Float32Array;
        let agree = 0;
        for (let r = 0; r < result.testRows.length; r++) {
          const top = proba[r * 2 + 1] > proba[r * 2] ? 1 : 0;
          if (top === result.testPredictions[r]) agree++;
          assert.ok(Math.abs(proba[r * 2] + proba[r * 2 + 1] - 1) < 1e-4);
        }
        assert.ok(agree / result.testRows.length >= 0.995, `agreement ${agree}/${result.testRows.length}`);
      } finally {
        await session.release();
      }
    });
  });
}

describe('training transfer learning on held-out images', function () {
  this.timeout(120_000);
  let root: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'zerve-training-transfer-heldout-'));
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('classifies mnist digits it never trained on, through the backbone and a mlp head', async () => {
    // 30 training and 15 test digits of each of 0, 1 and 7: different handwriting, not variants.
    const mnist = await new DatasetStore({ data: join(root, 'data') }).open('mnist');
    const wanted = ['0', '1', '7'];
    const seen = new Map<string, number>();
    const folder = join(root, 'digits');
    for (let i = 0; i < mnist.labels.length && [...seen.values()].reduce((a, b) => a + b, 0) < 45 * wanted.length; i++) {
      const label = mnist.classes[mnist.labels[i]];
      const n = seen.get(label) ?? 0;
      if (!wanted.includes(label) || n >= 45) continue;
      seen.set(label, n + 1);
      const source = await mnist.read(i);
      assert.equal(source.kind, 'raw');
      const dir = n < 30 ? join(folder, label) : join(folder, 'test', label);
      await mkdir(dir, { recursive: true });
      await sharp(source.pixels, { raw: { width: source.width, height: source.height, channels: source.channels } }).png().toFile(join(dir, `${i}.png`));
    }
    const manifest = await new DatasetStore({ data: join(root, 'data') }).importFolder(folder);
    const result = await trainTransfer(root, manifest.id, 'squeezenet-fp32', { head: 'mlp', params: { hidden: 32, learningRate: 0.003 } });
    assert.equal(result.model.layers.length, 2, 'a hidden layer, then the output layer');
    assert.equal(result.testRows.length, 45);
    assert.ok(result.test.accuracy >= 0.85, `held-out accuracy ${result.test.accuracy}, confusion ${JSON.stringify(result.test.confusion)}`);
    log.warn({ heldOutAccuracy: result.test.accuracy }, 'held-out mnist through the backbone');
  });
});

