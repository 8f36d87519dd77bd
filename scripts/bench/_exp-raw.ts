import { readFileSync } from 'node:fs';
import { RawClassifier } from './raw-classifier.ts';
import { runLoad } from './load-runner.ts';
const model = '/work/shared/fixtures/models/squeezenet-fp32/model.onnx';
for (const img of ['kitten.png', 'kitten-1600.jpg']) {
  const bytes = readFileSync('/work/shared/fixtures/images/' + img);
  for (const threads of [2, 1]) {
    const c = await RawClassifier.load({ modelPath: model, threads });
    console.log(img, 'top1', await c.classify(bytes));
    for (const conc of [1, 2, 4, 16]) {
      const r = await runLoad(() => c.classify(bytes), { concurrency: conc, warmUpMs: 500, durationMs: 2000 });
      console.log(img, 'threads', threads, 'conc', conc, r.perSecond.toFixed(0), r.p50Ms.toFixed(1), r.p99Ms.toFixed(1));
    }
    await c.release();
  }
  // two sessions x 1 thread
  const a = await RawClassifier.load({ modelPath: model, threads: 1 });
  const b = await RawClassifier.load({ modelPath: model, threads: 1 });
  let k = 0;
  for (const conc of [2, 4, 16]) {
    const r = await runLoad(() => (k++ % 2 ? a : b).classify(bytes), { concurrency: conc, warmUpMs: 500, durationMs: 2000 });
    console.log(img, '2x1 conc', conc, r.perSecond.toFixed(0), r.p50Ms.toFixed(1), r.p99Ms.toFixed(1));
  }
}
