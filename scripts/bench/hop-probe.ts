/**
 * Where a classification's time goes at concurrency 1: the client's round trip against the worker's
 * own `timings.totalMs` (decode + inference + its checks), and an echo round trip through the same
 * broker (the messaging alone), in alternating rounds. `tsx scripts/bench/hop-probe.ts [rounds]`.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { ZerveClient } from '../../shared/client.ts';
import { classifyService, ECHO_SERVICE } from '../../shared/protocol.ts';
import { BenchCluster } from './bench-cluster.ts';
import { makeBenchRepository } from '../../test/helpers/bench-repository.ts';
import { median } from './percentile.ts';
import { each, fixed } from './report-format.ts';

const FIXTURES = path.resolve(fileURLToPath(new URL('../../', import.meta.url)), '..', 'shared', 'fixtures');
const MODEL = 'squeezenet-fp32';
const rounds = Number(process.argv[2] ?? 5);
const perRound = Number(process.argv[3] ?? 100);
const workerArgs = (process.env.HOP_WORKER_ARGS ?? '').split(' ').filter(Boolean);

const repository = await makeBenchRepository(MODEL, path.join(FIXTURES, 'models', MODEL));
const cluster = await BenchCluster.start();
try {
  await cluster.addWorkers(['inference', '--models', repository.path, '--threads', '2', '--capacity', '4', ...workerArgs], 1, classifyService(MODEL));
  await cluster.addWorkers(['echo', '--capacity', '64'], 1, ECHO_SERVICE);
  const client = new ZerveClient({ broker: cluster.frontend });
  const images = ['kitten.png', 'kitten-1600.jpg'].map((n) => [n, readFileSync(path.join(FIXTURES, 'images', n))] as const);
  const stats: Record<string, number[]> = {};
  const add = (k: string, v: number) => (stats[k] ??= []).push(v);
  for (let r = 0; r < rounds; r++) {
    for (const [name, bytes] of images) {
      const trips: number[] = [];
      const outside: number[] = [];
      const total: number[] = [];
      for (let i = 0; i < perRound + 10; i++) {
        const t0 = performance.now();
        const reply = await client.classify(MODEL, bytes, { topk: 1, cache: false });
        const ms = performance.now() - t0;
        if (i < 10) continue;
        trips.push(ms);
        total.push(reply.timings.totalMs!);
        outside.push(ms - reply.timings.totalMs!);
      }
      add(`${name} round trip p50`, median(trips));
      add(`${name} worker totalMs p50`, median(total));
      add(`${name} outside the worker's totalMs p50`, median(outside));
    }
    for (const [name, payload] of [['64 B', Buffer.alloc(64, 1)], ...images] as const) {
      const echo: number[] = [];
      for (let i = 0; i < perRound + 10; i++) {
        const t0 = performance.now();
        await client.request(ECHO_SERVICE, [payload]);
        if (i >= 10) echo.push(performance.now() - t0);
      }
      add(`echo of ${name} (both ways) round trip p50`, median(echo));
    }
  }
  for (const [k, v] of Object.entries(stats)) process.stdout.write(`${k}: ${fixed(median(v), 3)} ms (rounds: ${each(v, 2)})\n`);
  await client.close();
} finally {
  await cluster.close();
  await repository.remove();
}
