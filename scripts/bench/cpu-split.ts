/**
 * Where the cluster's CPU per image goes: at concurrency 4, the CPU (user + system, all threads, from
 * /proc) per image of the client (this process), the broker and one inference worker (2 threads,
 * capacity 4), against raw (sharp + onnxruntime in this process), in 4 alternating rounds per image.
 * `tsx scripts/bench/cpu-split.ts`.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchCluster } from './bench-cluster.ts';
import { makeBenchRepository } from '../../test/helpers/bench-repository.ts';
import { ZerveClient } from '../../shared/client.ts';
import { classifyService } from '../../shared/protocol.ts';
import { runLoad } from './load-runner.ts';
import { processCpuUs } from './process-cpu.ts';
import { RawClassifier } from './raw-classifier.ts';
import { each } from './report-format.ts';
const FIX = path.resolve(fileURLToPath(new URL('../../', import.meta.url)), '..', 'shared', 'fixtures');
const M = 'squeezenet-fp32';
const repo = await makeBenchRepository(M, path.join(FIX, 'models', M));
const cluster = await BenchCluster.start();
try {
  const [w] = await cluster.addWorkers(['inference', '--models', repo.path, '--threads', '2', '--capacity', '4'], 1, classifyService(M));
  const client = new ZerveClient({ broker: cluster.frontend });
  const raw = await RawClassifier.load({ modelPath: path.join(FIX, 'models', M, 'model.onnx'), threads: 2, allowSpinning: false });
  for (const img of ['kitten.png', 'kitten-1600.jpg']) {
    const bytes = readFileSync(path.join(FIX, 'images', img));
    const rows: Record<string, number[]> = {};
    // CPU per image counts every completion, warm-up included, as runLoad's cpuMsPerTask does (load-runner.ts).
    for (let r = 0; r < 4; r++) {
      for (const which of r % 2 ? ['cluster', 'raw'] : ['raw', 'cluster']) {
        const pids = { client: process.pid, broker: cluster.broker.pid, worker: w!.pid };
        const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, processCpuUs(p)!]));
        let n = 0;
        const classify = async () => {
          if (which === 'raw') await raw.classify(bytes);
          else await client.classify(M, bytes, { topk: 1, cache: false });
          n++;
        };
        await runLoad(classify, { concurrency: 4, warmUpMs: 200, durationMs: 2000 });
        for (const [k, p] of Object.entries(pids)) (rows[`${which} ${k}`] ??= []).push((processCpuUs(p)! - before[k]!) / n / 1000);
      }
    }
    for (const [k, v] of Object.entries(rows)) process.stdout.write(`${img} ${k} CPU ms per image, each round: ${each(v, 2)}\n`);
  }
  await raw.release();
  await client.close();
} finally {
  await cluster.close();
  await repo.remove();
}
