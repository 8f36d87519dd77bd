import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ZerveError } from '../shared/errors.ts';
import { logger } from '../shared/logger.ts';
import { DIGITS_REQUEST } from '../shared/training.ts';
import { PIXEL_INPUT, PROBABILITIES_OUTPUT } from '../workers/training/onnx-export.ts';
import { prepareTraining, runConfigFor, runTraining, trainOne, type TrainingResult } from '../workers/training/trainer.ts';

const log = logger.child({ test: 'training-mnist' });

describe('training mlp on built-in mnist', function () {
  this.timeout(60_000);
  let dir: string;
  let result: TrainingResult;
  let trainMs: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'zerve-training-mnist-'));
    const started = performance.now();
    result = await runTraining(
      { ...DIGITS_REQUEST, family: 'mlp', export: { name: 'mnist-mlp' } },
      { options: { data: join(dir, 'data'), models: join(dir, 'models') } },
    );
    trainMs = performance.now() - started;
    log.warn({ testAccuracy: result.test.accuracy, trainMs: Math.round(trainMs), bestEpoch: result.best.bestEpoch }, 'mnist trained');
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reaches test accuracy of at least 0.95 well under a minute', () => {
    assert.ok(result.test.accuracy >= 0.95, `test accuracy ${result.test.accuracy}`);
    assert.ok(trainMs < 50_000, `took ${trainMs} ms`);
    assert.equal(result.test.confusion.length, 10);
    assert.ok(result.test.macroF1 > 0.94);
  });

  it('exports an ONNX model that agrees with the trainer on the test split', async () => {
    assert.ok(result.exported);
    assert.equal(result.exported.version, '1');
    assert.deepEqual(result.exported.config.input.channels, 'grey');
    const prepared = await prepareTraining({ datasetId: 'mnist', family: 'mlp', seed: 1 }, { options: { data: join(dir, 'data') } });
    assert.deepEqual(prepared.testRows, result.testRows);
    const { cols } = prepared.features;
    const x = new Float32Array(result.testRows.length * cols);
    result.testRows.forEach((row, i) => x.set(prepared.features.data.subarray(row * cols, (row + 1) * cols), i * cols));
    const session = await ort.InferenceSession.create(result.exported.modelPath);
    try {
      const output = await session.run({ [PIXEL_INPUT]: new ort.Tensor('float32', x, [result.testRows.length, 1, 28, 28]) });
      const proba = output[PROBABILITIES_OUTPUT].data as Float32Array;
      let agree = 0;
      for (let r = 0; r < result.testRows.length; r++) {
        let top = 0;
        for (let j = 1; j < 10; j++) if (proba[r * 10 + j] > proba[r * 10 + top]) top = j;
        if (top === result.testPredictions[r]) agree++;
      }
      assert.ok(agree / result.testRows.length >= 0.995, `agreement ${agree}/${result.testRows.length}`);
    } finally {
      await session.release();
    }
  });
});

describe('training determinism and cancel', function () {
  this.timeout(30_000);

  it('gives identical metrics for the same seed', async () => {
    const request = { datasetId: 'mnist', family: 'mlp' as const, epochs: 2, seed: 7, params: { hidden: 32 } };
    const prepared = await prepareTraining(request);
    const a = await trainOne(prepared, runConfigFor(request, { learningRate: 0.002 }));
    const b = await trainOne(prepared, runConfigFor(request, { learningRate: 0.002 }));
    assert.deepEqual({ ...a, elapsedMs: 0 }, { ...b, elapsedMs: 0 });
    const other = await trainOne(prepared, runConfigFor({ ...request, seed: 8 }, { learningRate: 0.002 }));
    assert.notEqual(other.valLoss, a.valLoss);
  });

  it('stops within an epoch when the signal aborts', async () => {
    const request = { datasetId: 'mnist', family: 'mlp' as const, epochs: 50, seed: 1, params: { hidden: 64, patience: 50 } };
    const prepared = await prepareTraining(request);
    const controller = new AbortController();
    let epochMs = 0;
    let abortedAt = 0;
    let epochs = 0;
    const run = trainOne(prepared, runConfigFor(request, {}), {
      signal: controller.signal,
      onEpoch: (_epoch, progress) => {
        epochs++;
        if (epochs === 1) {
          epochMs = progress.elapsedMs;
          // Abort in the middle of the second epoch.
          setTimeout(() => {
            abortedAt = performance.now();
            controller.abort();
          }, epochMs / 2);
        }
      },
    });
    await assert.rejects(run, (err: unknown) => err instanceof ZerveError && err.code === 'CANCELED');
    const stopMs = performance.now() - abortedAt;
    assert.ok(epochs <= 2, `ran ${epochs} epochs`);
    assert.ok(stopMs < epochMs / 2, `stopped ${stopMs} ms after abort; an epoch takes ${epochMs} ms`);
  });
});
