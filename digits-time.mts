import { runTraining } from './workers/training/trainer.ts';
for (const [epochs, shift] of [[8, 0], [12, 1]] as const) {
  const t = performance.now();
  const r = await runTraining({ datasetId: 'mnist', family: 'mlp', params: { learningRate: 0.003, hidden: 128, lrDecay: 0.85 }, epochs, augmentShiftPx: shift, seed: 1 }, {});
  console.log(epochs, shift, r.test.accuracy, Math.round(performance.now() - t), r.best.bestEpoch);
}
