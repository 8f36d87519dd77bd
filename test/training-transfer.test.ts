import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { logger } from '../shared/logger.ts';
import { preprocessForBackbone, squeezenetBackbone } from '../workers/training/backbone.ts';
import { DatasetStore } from '../workers/training/dataset-store.ts';
import { PROBABILITIES_OUTPUT } from '../workers/training/onnx-export.ts';
import { runTraining, type TrainingResult } from '../workers/training/trainer.ts';
import { photoVariants } from './fixtures/photo-variants.ts';

const FIXTURES = new URL('../../shared/fixtures/', import.meta.url).pathname;
const log = logger.child({ test: 'training-transfer' });

describe('training transfer learning on squeezenet embeddings', function () {
  this.timeout(60_000);
  let root: string;
  let result: TrainingResult;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'zerve-training-transfer-'));
    const folder = join(root, 'pets');
    for (const [label, file] of [['kitten', 'kitten.png'], ['fish', 'fish.png']] as const) {
      const photo = await readFile(join(FIXTURES, 'images', file));
      const images = await photoVariants(photo, 18, 0);
      await mkdir(join(folder, label), { recursive: true });
      await mkdir(join(folder, 'test', label), { recursive: true });
      for (const [i, img] of images.entries()) {
        await writeFile(join(folder, i < 12 ? label : join('test', label), `${i}.jpg`), img);
      }
    }
    const data = join(root, 'data');
    const manifest = await new DatasetStore({ data }).importFolder(folder);
    assert.equal(manifest.explicitTest, true);
    result = await runTraining(
      {
        datasetId: manifest.id,
        family: 'transfer',
        backbone: 'squeezenet-fp32',
        head: 'linear',
        search: { mode: 'grid', params: ['learningRate=0.01,0.003'] },
        epochs: 30,
        split: { kind: 'auto', validationFraction: 0.25 },
        seed: 3,
        export: { name: 'pets' },
      },
      {
        options: { data, models: join(root, 'models'), threads: 2 },
        backbones: { 'squeezenet-fp32': squeezenetBackbone(join(FIXTURES, 'models', 'squeezenet-fp32', 'model.onnx')) },
      },
    );
    log.warn({ testAccuracy: result.test.accuracy, imagesPerSecond: Math.round(result.featureImagesPerSecond), ms: Math.round(result.elapsedMs) }, 'transfer trained');
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('trains a head that separates kittens from fish', () => {
    assert.equal(result.runs.length, 2);
    assert.deepEqual(result.classes, ['fish', 'kitten']);
    assert.equal(result.testRows.length, 12);
    assert.ok(result.test.accuracy >= 0.9, `test accuracy ${result.test.accuracy}`);
  });

  it('exports one merged ONNX graph that predicts like the trainer', async () => {
    assert.ok(result.exported);
    const config = JSON.parse(await readFile(join(result.exported.path, 'config.json'), 'utf8')) as { input: { channels: string; width: number } };
    assert.equal(config.input.channels, 'bgr');
    assert.equal(config.input.width, 224);
    const labels = (await readFile(join(result.exported.path, 'labels.txt'), 'utf8')).trim().split('\n');
    assert.deepEqual(labels, ['fish', 'kitten']);
    const backbone = squeezenetBackbone(join(FIXTURES, 'models', 'squeezenet-fp32', 'model.onnx'));
    const dataset = await new DatasetStore({ data: join(root, 'data') }).open(result.datasetId);
    const plane = 3 * 224 * 224;
    const input = new Float32Array(result.testRows.length * plane);
    for (const [i, row] of result.testRows.entries()) input.set(await preprocessForBackbone(await dataset.read(row), backbone, 50_000_000), i * plane);
    const session = await ort.InferenceSession.create(result.exported.modelPath);
    try {
      assert.deepEqual(session.inputNames, ['data_0']);
      const output = await session.run({ data_0: new ort.Tensor('float32', input, [result.testRows.length, 3, 224, 224]) });
      const proba = output[PROBABILITIES_OUTPUT].data as Float32Array;
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
