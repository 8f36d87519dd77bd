/**
 * `npm run bench -- inference`: what the cluster costs against the best one process can do. The
 * cluster runs as separate processes on localhost TCP, as a user runs it (`zerve broker`,
 * `zerve worker inference`, this process as the client); on a small machine they share the same
 * cores, so the cluster rows pay for the broker's and the client's CPU too.
 */
import path from 'node:path';
import { ZerveClient } from '../../shared/client.ts';
import { classifyService } from '../../shared/protocol.ts';
import { makeBenchRepository } from '../../test/helpers/bench-repository.ts';
import { BenchCluster } from './bench-cluster.ts';
import { BENCH_IMAGES, BENCH_MODEL, benchModelDir, HTTP_CONCURRENCIES, HTTP_IMAGE, loadBenchImages, TABBY, THREAD_BUDGET } from './bench-model.ts';
import { Heading, type BenchContext, type BenchSection, type ReportPart } from './bench-section.ts';
import { benchHttp, type HttpBenchOptions, type HttpBenchResult } from './http-bench.ts';
import { errorsCell, runLoad, type LoadResult } from './load-runner.ts';
import { benchOip, type OipBenchRow } from './oip-section.ts';
import { RawClassifier } from './raw-classifier.ts';
import { fixed } from './report-format.ts';
import { ReportTable } from './report-table.ts';
import { CACHE_MODES, benchResultCache, type CacheRow } from './result-cache-section.ts';

const CONCURRENCIES = [1, 4, 16];
/** The cluster at saturation against the raw limit (issue 10). */
const SATURATION_TARGET = 0.95;
const CACHE_CONCURRENCY = 16;

const loadOptions = (c: BenchContext, concurrency: number) => ({ concurrency, warmUpMs: c.warmUpMs, durationMs: c.durationMs });

export interface InferenceSection {
  settings: Record<string, unknown>;
  rows: InferenceRow[];
  saturation: Saturation[];
  http: HttpSection;
  oip: OipBenchRow[];
  resultCache: { rows: CacheRow[] };
  warmUpMs: number;
  durationMs: number;
}

interface RawSetup {
  name: string;
  sessions: number;
  threadsPerSession: number;
  allowSpinning: boolean;
}
/** The same thread budget spent three ways; the fastest at each concurrency is "raw". */
const RAW_SETUPS: RawSetup[] = [
  { name: 'raw: 1 session x 2 threads', sessions: 1, threadsPerSession: 2, allowSpinning: true },
  { name: 'raw: 1 session x 2 threads, no spinning', sessions: 1, threadsPerSession: 2, allowSpinning: false },
  { name: 'raw: 2 sessions x 1 thread', sessions: 2, threadsPerSession: 1, allowSpinning: true },
];

interface ClusterSetup {
  name: string;
  workers: number;
  threads: number;
  /** Requests each worker takes at once: enough that decoding one overlaps running another. */
  capacity: number;
}
const CLUSTER_SETUPS: ClusterSetup[] = [
  { name: 'cluster: 1 worker x 2 threads', workers: 1, threads: 2, capacity: 4 },
  { name: 'cluster: 2 workers x 1 thread', workers: 2, threads: 1, capacity: 2 },
];

interface InferenceRow extends LoadResult {
  image: string;
  setup: string;
  kind: 'raw' | 'cluster';
  /** images/s over the best raw setup at the same concurrency. */
  ratioToRaw?: number;
  /** images/s over the best raw result at any concurrency (the limit). */
  ratioToRawLimit?: number;
}

async function benchRaw(c: BenchContext, images: Map<string, Buffer>): Promise<InferenceRow[]> {
  const rows: InferenceRow[] = [];
  const modelPath = path.join(benchModelDir(c.fixtures), 'model.onnx');
  for (const setup of RAW_SETUPS) {
    const classifiers = await Promise.all(
      Array.from({ length: setup.sessions }, () => RawClassifier.load({ modelPath, threads: setup.threadsPerSession, allowSpinning: setup.allowSpinning })),
    );
    let next = 0;
    // Round robin over the sessions: with 2 sessions, 2 images run at once, one thread each.
    const classify = (bytes: Buffer) => classifiers[next++ % classifiers.length]!.classify(bytes);
    try {
      for (const [image, bytes] of images) {
        const top = await classify(bytes);
        if (top !== TABBY) throw new Error(`${setup.name}: ${image} classified as ${top}, expected ${TABBY}`);
        for (const concurrency of CONCURRENCIES) {
          c.progress(`${setup.name}, ${image}, concurrency ${concurrency}`);
          rows.push({ image, setup: setup.name, kind: 'raw', ...(await runLoad(() => classify(bytes), { ...loadOptions(c, concurrency), cpuPids: [process.pid] })) });
        }
      }
    } finally {
      await Promise.all(classifiers.map((c) => c.release()));
    }
  }
  return rows;
}

async function benchClusterSetup(
  c: BenchContext,
  cluster: BenchCluster,
  setup: ClusterSetup,
  repository: string,
  images: Map<string, Buffer>,
  whileRunning?: () => Promise<void>,
): Promise<InferenceRow[]> {
  c.progress(`${setup.name}: starting ${setup.workers} worker process(es)`);
  const args = ['inference', '--models', repository, '--threads', String(setup.threads), '--capacity', String(setup.capacity)];
  const workers = await cluster.addWorkers(args, setup.workers, classifyService(BENCH_MODEL));
  const client = new ZerveClient({ broker: cluster.frontend });
  const rows: InferenceRow[] = [];
  try {
    for (const [image, bytes] of images) {
      // The result cache is skipped here: these rows measure decoding and inference (its own rows follow).
      const reply = await client.classify(BENCH_MODEL, bytes, { topk: 1, cache: false });
      const top = reply.predictions[0]?.index;
      if (top !== TABBY) throw new Error(`${setup.name}: ${image} classified as ${top}, expected ${TABBY}`);
      for (const concurrency of CONCURRENCIES) {
        c.progress(`${setup.name}, ${image}, concurrency ${concurrency}`);
        // CPU of every process on the path: this client, the broker and the workers.
        const pids = [process.pid, cluster.broker.pid, ...workers.map((w) => w.pid)];
        const result = await runLoad(() => client.classify(BENCH_MODEL, bytes, { topk: 1, cache: false }), { ...loadOptions(c, concurrency), cpuPids: pids });
        rows.push({ image, setup: setup.name, kind: 'cluster', ...result });
      }
    }
    await whileRunning?.();
  } finally {
    await client.close();
    await cluster.stopWorkers(workers);
  }
  return rows;
}

/** Fills in each cluster row's ratios to the best raw setup. */
function addRatios(rows: InferenceRow[]): void {
  for (const row of rows) {
    if (row.kind !== 'cluster') continue;
    const raw = rows.filter((r) => r.kind === 'raw' && r.image === row.image);
    const sameConcurrency = Math.max(...raw.filter((r) => r.concurrency === row.concurrency).map((r) => r.perSecond));
    const limit = Math.max(...raw.map((r) => r.perSecond));
    row.ratioToRaw = row.perSecond / sameConcurrency;
    row.ratioToRawLimit = row.perSecond / limit;
  }
}

interface Saturation {
  image: string;
  rawLimit: { setup: string; concurrency: number; perSecond: number };
  clusterBest: { setup: string; concurrency: number; perSecond: number };
  ratio: number;
  target: number;
  met: boolean;
  /**
   * Least CPU per image of any raw row over that of any cluster row at the same concurrency as the
   * throughput rows above (16): what the throughput ratio is on idle cores, where CPU is the limit.
   */
  cpuRatio?: number;
}

function saturation(rows: InferenceRow[]): Saturation[] {
  const best = (list: InferenceRow[]) => list.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
  return BENCH_IMAGES.map((image) => {
    const raw = best(rows.filter((r) => r.kind === 'raw' && r.image === image));
    const cluster = best(rows.filter((r) => r.kind === 'cluster' && r.image === image));
    const ratio = cluster.perSecond / raw.perSecond;
    const leastCpu = (list: InferenceRow[]) => Math.min(...list.filter((r) => r.concurrency === CONCURRENCIES.at(-1)).map((r) => r.cpuMsPerTask ?? Infinity));
    const cpuRatio = leastCpu(rows.filter((r) => r.kind === 'raw' && r.image === image)) / leastCpu(rows.filter((r) => r.kind === 'cluster' && r.image === image));
    return {
      ...(Number.isFinite(cpuRatio) ? { cpuRatio } : {}),
      image,
      rawLimit: { setup: raw.setup, concurrency: raw.concurrency, perSecond: raw.perSecond },
      clusterBest: { setup: cluster.setup, concurrency: cluster.concurrency, perSecond: cluster.perSecond },
      ratio,
      target: SATURATION_TARGET,
      met: ratio >= SATURATION_TARGET,
    };
  });
}

/** Runs `benchHttp` (POST /api/classify against ZerveClient.classify). */
async function benchHttpSection(c: BenchContext, options: HttpBenchOptions): Promise<HttpSection> {
  c.progress(`HTTP: POST /api/classify vs ZerveClient.classify, ${path.basename(options.image)}, concurrency ${options.concurrency?.join(', ')}`);
  return { result: await benchHttp(options) };
}

interface HttpSection {
  result?: HttpBenchResult;
}

function inferenceTable(rows: InferenceRow[], image: string): ReportTable {
  const table = new ReportTable(['setup', 'conc.', 'images/s', 'p50 ms', 'p99 ms', 'x raw (same conc.)', 'x raw limit', 'CPU ms/image', 'errors']);
  for (const row of rows.filter((r) => r.image === image)) {
    table.push([
      row.setup,
      row.concurrency,
      fixed(row.perSecond),
      fixed(row.p50Ms),
      fixed(row.p99Ms),
      fixed(row.ratioToRaw, 2),
      fixed(row.ratioToRawLimit, 2),
      fixed(row.cpuMsPerTask, 1),
      errorsCell(row),
    ]);
  }
  return table;
}

function httpTable(result: HttpBenchResult): ReportTable {
  const table = new ReportTable(['path', 'conc.', 'images/s', 'p50 ms', 'p99 ms', 'HTTP / ZeroMQ']);
  for (const row of result.rows) {
    const ratio = result.ratios.find((r) => r.concurrency === row.concurrency)?.httpToZeromq;
    table.push([
      row.path === 'http' ? 'HTTP POST /api/classify (web app in this process)' : 'ZerveClient.classify',
      row.concurrency,
      fixed(row.imagesPerSec),
      fixed(row.p50Ms),
      fixed(row.p99Ms),
      row.path === 'http' ? fixed(ratio, 2) : '',
    ]);
  }
  return table;
}

function cacheTable(rows: CacheRow[]): ReportTable {
  const table = new ReportTable(
    ['image', 'requests', 'images/s', 'p50 ms', 'p99 ms', 'x cache skipped', 'cached answers', 'errors'],
    ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
  for (const row of rows) {
    table.push([row.image, CACHE_MODES[row.mode], fixed(row.perSecond), fixed(row.p50Ms), fixed(row.p99Ms), fixed(row.ratioToOff, 2), row.cachedAnswers, row.errors]);
}
  return table;
}

function oipTable(rows: OipBenchRow[]): ReportTable {
  const table = new ReportTable(['path', 'conc.', 'images/s', 'p50 ms', 'p99 ms', 'x ZerveClient.classify', 'x /api/classify', 'errors']);
  for (const row of rows) {
    table.push([row.path, row.concurrency, fixed(row.perSecond), fixed(row.p50Ms), fixed(row.p99Ms), fixed(row.toZeromq, 2), fixed(row.toClassify, 2), errorsCell(row)]);
  }
  return table;
}

async function run(c: BenchContext): Promise<InferenceSection> {
  const images = loadBenchImages(c.fixtures);
  const rows: InferenceRow[] = await benchRaw(c, images);
  let http: HttpSection = {};
  let cacheRows: CacheRow[] = [];
  let oip: OipBenchRow[] = [];
  const repository = await makeBenchRepository(BENCH_MODEL, benchModelDir(c.fixtures));
  c.progress('starting the broker process');
  const cluster = await BenchCluster.start();
  try {
    for (const [i, setup] of CLUSTER_SETUPS.entries()) {
      // The HTTP, /v2 and cache rows run against the last setup's workers while they are up.
      const whileRunning =
        i === CLUSTER_SETUPS.length - 1
          ? async () => {
              http = await benchHttpSection(c, {
                broker: cluster.frontend,
                model: BENCH_MODEL,
                image: path.join(c.fixtures, 'images', HTTP_IMAGE),
                concurrency: HTTP_CONCURRENCIES,
                durationMs: c.durationMs,
              });
              const client = new ZerveClient({ broker: cluster.frontend });
              try {
                cacheRows = await benchResultCache({ client, model: BENCH_MODEL, images, expected: TABBY, load: loadOptions(c, CACHE_CONCURRENCY), progress: c.progress });
              } finally {
                await client.close();
              }
              oip = await benchOip({
                broker: cluster.frontend,
                model: BENCH_MODEL,
                image: images.get(HTTP_IMAGE)!,
                expectedClass: TABBY,
                concurrency: HTTP_CONCURRENCIES,
                warmUpMs: c.warmUpMs,
                durationMs: c.durationMs,
                progress: c.progress,
              });
            }
          : undefined;
      rows.push(...(await benchClusterSetup(c, cluster, setup, repository.path, images, whileRunning)));
    }
  } finally {
    c.progress('stopping the cluster');
    await cluster.close();
    await repository.remove();
  }
  addRatios(rows);
  const settings = { model: BENCH_MODEL, images: BENCH_IMAGES, concurrencies: CONCURRENCIES, threadBudget: THREAD_BUDGET, rawSetups: RAW_SETUPS, clusterSetups: CLUSTER_SETUPS };
  return { settings, rows, saturation: saturation(rows), http, oip, resultCache: { rows: cacheRows }, warmUpMs: c.warmUpMs, durationMs: c.durationMs };
}

function report(r: InferenceSection): ReportPart[] {
  const out: ReportPart[] = [
    `Every row: ${r.warmUpMs} ms warm-up, then ${r.durationMs} ms measured. Client (this process), broker and workers are separate processes sharing these CPUs.`,
    new Heading(`Inference: ${BENCH_MODEL}, ${THREAD_BUDGET} onnxruntime threads in total in every setup; raw = sharp decode + onnxruntime in this process, no broker`),
  ];
  for (const image of BENCH_IMAGES) {
    out.push('');
    out.push(`${image}${image === 'kitten.png' ? ' (224x224 PNG: cheap decode)' : ' (1600x1600 JPEG: decoding and resizing cost about as much as inference)'}`);
    out.push(inferenceTable(r.rows, image));
  }
  out.push('');
  for (const s of r.saturation) {
    out.push(
      `${s.image}: at saturation the cluster does ${fixed(s.clusterBest.perSecond)} images/s (${s.clusterBest.setup}, conc. ${s.clusterBest.concurrency}) ` +
        `vs raw ${fixed(s.rawLimit.perSecond)} (${s.rawLimit.setup}, conc. ${s.rawLimit.concurrency}): ${fixed(s.ratio, 2)}x raw; target >= ${s.target}x ${s.met ? 'met' : 'NOT met'}.` +
        (s.cpuRatio === undefined ? '' : ` CPU per image (client + broker + workers vs raw, least at conc. ${CONCURRENCIES.at(-1)}): ${fixed(s.cpuRatio, 2)}x raw's efficiency.`),
    );
  }
  out.push(
    '',
    new Heading(
      `HTTP: ${HTTP_IMAGE}, on the last inference setup's workers (${CLUSTER_SETUPS.at(-1)!.name}); ` +
        `from concurrency ${r.http.result?.burstFrom ?? '-'} on, one burst of that many requests at once (queued at the broker), each answered once`,
    ),
    r.http.result ? httpTable(r.http.result) : 'not run',
    '',
    new Heading(
      `Open Inference Protocol: ${HTTP_IMAGE} on the same workers, web app in this process; /v2 sends the image as a BYTES element ` +
        '(binary data extension) or a ready FP32 tensor preprocessed once by the client, and asks classification: 1',
    ),
    oipTable(r.oip),
    '',
    new Heading(`Result cache: ${BENCH_MODEL} on the same workers (${CLUSTER_SETUPS.at(-1)!.name}), ZerveClient.classify, concurrency ${CACHE_CONCURRENCY}`),
    cacheTable(r.resultCache.rows),
  );
  return out;
}

/**
 * `npm run bench -- inference`: raw against cluster at each concurrency, HTTP, /v2 and the result
 * cache; it includes `rounds`.
 */
export const inferenceSection: BenchSection<InferenceSection> = { name: 'inference', includes: ['rounds'], run, report };
