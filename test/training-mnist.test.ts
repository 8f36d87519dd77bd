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

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'zerve-training-mnist-'));
    result = await runTraining(
      { ...DIGITS_REQUEST, family: 'mlp', export: { name: 'mnist-mlp' } },
      { options: { data: join(dir, 'data'), models: join(dir, 'models') } },
    );
    log.warn({ testAccuracy: result.test.accuracy, ms: Math.round(result.elapsedMs), bestEpoch: result.best.bestEpoch }, 'mnist trained');
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // Its speed is measured in `npm run bench -- training` (digits), not here.
  it('reaches test accuracy of at least 0.95', () => {
    assert.ok(result.test.accuracy >= 0.95, `test accuracy ${result.test.accuracy}`);
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

  it('stops before the epoch in progress ends when the signal aborts', async () => {
    const request = { datasetId: 'mnist', family: 'mlp' as const, epochs: 50, seed: 1, params: { hidden: 64, patience: 50 } };
    const prepared = await prepareTraining(request);
    const controller = new AbortController();
    const events: string[] = [];
    const run = trainOne(prepared, runConfigFor(request, {}), {
      signal: controller.signal,
      onEpoch: (epoch) => {
        events.push(`epoch ${epoch}`);
        // Abort as soon as epoch 2 has started (the trainer yields between its mini-batches).
        if (epoch === 1) {
          setImmediate(() => {
            events.push('abort');
            controller.abort();
          });
        }
      },
    });
    await assert.rejects(run, (err: unknown) => err instanceof ZerveError && err.code === 'CANCELED');
    // No epoch event after the abort: epoch 2 was cut off mid-way.
    assert.deepEqual(events, ['epoch 1', 'abort']);
  });
});
