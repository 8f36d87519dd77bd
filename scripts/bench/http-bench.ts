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
import { percentile } from './percentile.ts';

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
  /** Concurrency from which a run is one burst ({@link BURST_FROM}). */
  burstFrom: number;
}

/**
 * From this concurrency on, a run is one burst: that many requests sent at once, each answered once
 * (every one must succeed within the deadline), instead of closed loops for `durationMs`.
 */
export const BURST_FROM = 256;
/** Deadline of the requests of a run: a burst of 1,000 waits in the broker's queue for many seconds. */
const DEADLINE_MS = 120_000;

async function run(
  path: HttpBenchRow['path'],
  concurrency: number,
  durationMs: number,
  warmupRequests: number,
  once: () => Promise<void>,
): Promise<HttpBenchRow> {
  const burst = concurrency >= BURST_FROM;
  if (!burst) for (let i = 0; i < warmupRequests; i += concurrency) await Promise.all(Array.from({ length: concurrency }, once));
  const latencies: number[] = [];
  const started = performance.now();
  const end = started + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      do {
        const t0 = performance.now();
        await once();
        latencies.push(performance.now() - t0);
      } while (!burst && performance.now() < end);
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
    p50Ms: round(percentile(latencies, 0.5)),
    p99Ms: round(percentile(latencies, 0.99)),
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
  const client = new ZerveClient({ broker: options.broker, timeoutMs: DEADLINE_MS });
  const web = new WebApp({ broker: options.broker, http: 0, requestTimeoutMs: DEADLINE_MS }, log);
  const agent = new Agent({ keepAlive: true, maxSockets: maxConcurrency });
  try {
    // The result cache is skipped on both paths: the same image every time would be answered from it.
    const url = new URL(`/api/classify?model=${encodeURIComponent(options.model)}&cache=false`, await web.start());
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
      await client.classify(options.model, image, { cache: false });
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
    return { rows, ratios, burstFrom: BURST_FROM };
  } finally {
    agent.destroy();
    await web.close();
    await client.close();
  }
}
