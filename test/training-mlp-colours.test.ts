import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { DatasetStore } from '../workers/training/dataset-store.ts';
import { runTraining, type TrainingProgress } from '../workers/training/trainer.ts';
import type { TrainingRequest } from '../shared/training-request.ts';

/**
 * 16 solid red and 16 solid blue 48x48 PNGs, each a slightly different shade (identical files
 * would be stored once), like the dataset a new user tries first.
 */
async function solidColours(folder: string): Promise<void> {
  for (const [label, red, blue] of [['red', 255, 0], ['blue', 0, 255]] as const) {
    await mkdir(join(folder, label), { recursive: true });
    for (let i = 0; i < 16; i++) {
      const background = { r: red ? red - 3 * i : i, g: i, b: blue ? blue - 3 * i : i };
      await sharp({ create: { width: 48, height: 48, channels: 3, background } }).png().toFile(join(folder, label, `${i}.png`));
    }
  }
}

describe('training an mlp on the pixels of a trivially separable dataset', function () {
  this.timeout(60_000);
  let root: string;
  let datasetId: string;
  const train = (request: Omit<TrainingRequest, 'datasetId' | 'family'>, onProgress?: (event: TrainingProgress) => void) =>
    runTraining(
      { datasetId, family: 'mlp', seed: 1, ...request },
      { options: { data: join(root, 'data'), models: join(root, 'models') }, ...(onProgress ? { onProgress } : {}) },
    );

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'zerve-training-colours-'));
    await solidColours(join(root, 'colours'));
    const manifest = await new DatasetStore({ data: join(root, 'data') }).importFolder(join(root, 'colours'));
    assert.deepEqual(manifest.counts, { blue: { train: 16, test: 0 }, red: { train: 16, test: 0 } });
    datasetId = manifest.id;
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('separates solid red from solid blue with the defaults', async () => {
    const result = await train({});
    assert.ok(result.test.accuracy >= 0.95, `test accuracy ${result.test.accuracy}, confusion ${JSON.stringify(result.test.confusion)}`);
    assert.equal(result.testRows.length, 6); // 20% of each class held out for the test
  });

  it('separates them with the sgd optimizer', async () => {
    const result = await train({ params: { optimizer: 'sgd' }, epochs: 30 });
    assert.deepEqual(result.best.params, { optimizer: 'sgd' });
    assert.ok(result.test.accuracy >= 0.95, `test accuracy ${result.test.accuracy}`);
  });

  it('validates on every fold of a k-fold split and refits on them all', async () => {
    // A fold's training starts at epoch 1: count the starts per run.
    const starts = new Map<string, number>();
    const result = await train({ split: { kind: 'holdout', folds: 3 }, search: { mode: 'grid', params: ['learningRate=0.001,0.003'] } }, (event) => {
      if ('epoch' in event && event.epoch === 1) starts.set(`${event.phase} ${event.run}`, (starts.get(`${event.phase} ${event.run}`) ?? 0) + 1);
    });
    assert.equal(result.runs.length, 2);
    const refit = `refit ${result.runs.indexOf(result.best) + 1}`;
    assert.deepEqual(Object.fromEntries(starts), { 'run 1': 3, 'run 2': 3, [refit]: 1 });
    assert.ok(result.best.valAccuracy >= 0.95, `mean validation accuracy over the folds ${result.best.valAccuracy}`);
    assert.ok(result.test.accuracy >= 0.95, `test accuracy ${result.test.accuracy}`);
  });
});
