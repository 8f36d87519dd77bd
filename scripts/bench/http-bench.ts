/**
 * The benchmark's HTTP section: `POST /api/classify` against the same classification through the
 * ZeroMQ client, on a running cluster, at several concurrencies. `npm run bench` calls `benchHttp`.
 */
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { ZerveClient } from '../../shared/client.ts';
import type { Logger } from '../../shared/logger.ts';
import { WebApp } from '../../webapp/web-app.ts';

export interface HttpBenchOptions {
  /** Frontend endpoint of a running cluster that serves `model`. */
  broker: string;
  /** Model to classify with. */
  model: string;
  /** Image file sent with every request (the issue's: `kitten-1600.jpg`). */
  image: string;
  /** Concurrencies to measure. @defaultValue [1, 16] */
  concurrency?: number[];
  /** Measured time per run. @defaultValue 3000 */
  durationMs?: number;
  /** Requests per run before measuring. @defaultValue 20 */
  warmupRequests?: number;
  log?: Logger;
}

export interface HttpBenchRow {
  path: 'zeromq' | 'http';
  concurrency: number;
  requests: number;
  imagesPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface HttpBenchResult {
  rows: HttpBenchRow[];
  /** HTTP throughput over ZeroMQ-client throughput per concurrency (1 = the HTTP layer costs nothing). */
  ratios: { concurrency: number; httpToZeromq: number }[];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function run(
  path: HttpBenchRow['path'],
  concurrency: number,
  durationMs: number,
  warmupRequests: number,
  once: () => Promise<void>,
): Promise<HttpBenchRow> {
  for (let i = 0; i < warmupRequests; i += concurrency) await Promise.all(Array.from({ length: concurrency }, once));
  const latencies: number[] = [];
  const started = performance.now();
  const end = started + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        await once();
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsedS = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 100) / 100;
  return {
    path,
    concurrency,
    requests: latencies.length,
    imagesPerSec: round(latencies.length / elapsedS),
    p50Ms: round(percentile(latencies, 50)),
    p99Ms: round(percentile(latencies, 99)),
  };
}

/** Measures `POST /api/classify` (a web app started here, in this process) against `ZerveClient.classify`. */
export async function benchHttp(options: HttpBenchOptions): Promise<HttpBenchResult> {
  const concurrencies = options.concurrency ?? [1, 16];
  const durationMs = options.durationMs ?? 3000;
  const warmup = options.warmupRequests ?? 20;
  const log = options.log ?? pino({ level: 'warn' });
  const image = await readFile(options.image);
  const maxConcurrency = Math.max(...concurrencies);
  const client = new ZerveClient({ broker: options.broker, maxSockets: maxConcurrency });
  const web = new WebApp({ broker: options.broker, http: 0, maxInFlight: Math.max(256, maxConcurrency) }, log);
  const agent = new Agent({ keepAlive: true, maxSockets: maxConcurrency });
  try {
    const url = new URL(`/api/classify?model=${encodeURIComponent(options.model)}`, await web.start());
    const viaHttp = () =>
      new Promise<void>((resolve, reject) => {
        const req = request(
          url,
          { method: 'POST', agent, headers: { 'content-type': 'image/jpeg', 'content-length': image.length } },
          (res) => {
            res.resume();
            res.once('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
          },
        );
        req.once('error', reject);
        req.end(image);
      });
    const viaZeromq = async () => {
      await client.classify(options.model, image);
    };
    const rows: HttpBenchRow[] = [];
    for (const concurrency of concurrencies) {
      rows.push(await run('zeromq', concurrency, durationMs, warmup, viaZeromq));
      rows.push(await run('http', concurrency, durationMs, warmup, viaHttp));
    }
    const ratios = concurrencies.map((concurrency) => {
      const of = (path: HttpBenchRow['path']) => rows.find((r) => r.path === path && r.concurrency === concurrency)!;
      return { concurrency, httpToZeromq: Math.round((of('http').imagesPerSec / of('zeromq').imagesPerSec) * 1000) / 1000 };
    });
    return { rows, ratios };
  } finally {
    agent.destroy();
    await web.close();
    await client.close();
  }
}
