/**
 * The inference section's judged part: raw (sharp + onnxruntime in this process), the cluster as
 * `zerve up` runs it (one inference worker, ZerveClient over ZeroMQ) and the HTTP path
 * (`POST /api/classify`, on `zerve up`'s own web app and on a `zerve web` process of its own), all up
 * at once and measured in alternating rounds (forward, then backward), so that one noisy minute of a
 * shared machine weighs on every setup alike. Each goal is judged on the median of per-round ratios.
 * Every request skips the result cache (`cache: false`): the same bytes go out each time.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ZerveClient } from '../../shared/client.ts';
import { classifyService } from '../../shared/protocol.ts';
import { freePort } from './bench-cluster.ts';
import { makeBenchRepository } from '../../test/helpers/bench-repository.ts';
import { CliChild } from './cli-child.ts';
import { runLoad, type LoadResult } from './load-runner.ts';
import { median } from './percentile.ts';
import { processCpuUs } from './process-cpu.ts';
import { RawClassifier } from './raw-classifier.ts';
import { ReportTable } from './report-table.ts';
import { each, fixed, spread } from './report-format.ts';

export type InferencePath = 'raw' | 'cluster' | 'http (zerve up)' | 'http (own process)';
export const INFERENCE_PATHS: readonly InferencePath[] = ['raw', 'cluster', 'http (zerve up)', 'http (own process)'];

/** The issue's goals (#20). */
export const INFERENCE_GOALS = {
  /** Cluster p50 minus raw p50 at concurrency 1, ms. */
  addedP50Ms: 1,
  /** Raw's CPU per image over the cluster's (client + zerve up + worker). */
  cpuEfficiency: 0.95,
  /** HTTP images/s over ZerveClient's at the same concurrency. */
  httpToZeromq: 0.95,
} as const;

export interface InferenceRoundsOptions {
  /** Folder of the model (model.onnx, labels.txt), served by the cluster as version 1. */
  modelDir: string;
  /** The model's name in the cluster. */
  model: string;
  images: Map<string, Buffer>;
  /** The class every answer must have. */
  expected: number;
  /** onnxruntime intra-op threads of raw and of the cluster's one worker. @defaultValue 2 */
  threads?: number;
  /** Requests the worker takes at once, and the concurrency CPU per image is measured at. @defaultValue 4 */
  capacity?: number;
  rounds: number;
  /** Measured window of each concurrency-1 and saturated run. */
  windowMs: number;
  /** Image of the HTTP against ZeroMQ rows. */
  httpImage: string;
  /** Concurrencies of the HTTP against ZeroMQ rows; from 256 on a run is one burst of that many requests. */
  httpConcurrencies: number[];
  /** Idle time measured per round (CPU of zerve up and the worker with no requests). @defaultValue 2000 */
  idleMs?: number;
  progress(message: string): void;
}

/** One measurement per round. */
export interface PerRound {
  p50Ms: number[];
  perSecond: number[];
  cpuMsPerImage: number[];
}

export interface InferenceRoundsResult {
  rounds: number;
  /** `latency[image][path]`: concurrency 1. */
  latency: Record<string, Partial<Record<InferencePath, PerRound>>>;
  /**
   * `outsideWorkerMs[image]`: each round, the median over the cluster's concurrency-1 requests of the
   * client's round trip minus the worker's own `timings.totalMs`: the hops (client, broker, worker's
   * socket and back) and the reply's JSON.
   */
  outsideWorkerMs: Record<string, number[]>;
  /** `saturated[image][path]`: raw and cluster at concurrency `capacity`. */
  saturated: Record<string, Partial<Record<'raw' | 'cluster', PerRound>>>;
  /** `http[concurrency][path]`: images/s of ZerveClient and the two HTTP paths on `httpImage`. */
  http: Record<number, Partial<Record<InferencePath, number[]>>>;
  /** CPU ms per second of the idle zerve up process and worker, each round (10 ms clock ticks: coarse alone). */
  idle: { up: number[]; worker: number[] };
  /** The same over every round's idle time together: finer than any one round. */
  idleOverall: { up: number; worker: number };
  /** Each goal, judged on medians of per-round figures. */
  goals: InferenceGoal[];
}

export interface InferenceGoal {
  what: string;
  value: number;
  target: number;
  /** '<=' or '>=' the target. */
  sense: '<=' | '>=';
  met: boolean;
}

const BURST_FROM = 256;

function postImage(agent: Agent, url: URL, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
        resolve((JSON.parse(text) as { predictions: { index: number }[] }).predictions[0]!.index);
      });
    });
    req.once('error', reject);
    req.end(body);
  });
}

/** CPU ms per second of `pid` over `ms` of doing nothing here. */
async function idleCpu(pids: number[], ms: number): Promise<number[]> {
  const before = pids.map(processCpuUs);
  const started = performance.now();
  await sleep(ms);
  const elapsedS = (performance.now() - started) / 1000;
  return pids.map((pid, i) => ((processCpuUs(pid) ?? Number.NaN) - (before[i] ?? Number.NaN)) / 1000 / elapsedS);
}

/** Waits for a line on a child's stderr or stdout (`zerve up` and `zerve web` print their URL on stderr). */
async function outputLine(child: CliChild, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(child.recentOutput);
    if (match) return match;
    if (!child.running) throw new Error(`${child.args.join(' ')} exited: ${child.recentOutput}`);
    if (Date.now() > deadline) throw new Error(`no output matching ${pattern}: ${child.recentOutput}`);
    await sleep(100);
  }
}

/** Starts every setup, runs the rounds, stops them, and judges the goals. */
export async function benchInferenceRounds(o: InferenceRoundsOptions): Promise<InferenceRoundsResult> {
  const threads = o.threads ?? 2;
  const capacity = o.capacity ?? 4;
  const idleMs = o.idleMs ?? 2000;
  const repository = await makeBenchRepository(o.model, o.modelDir);
  const data = await mkdtemp(path.join(tmpdir(), 'zerve-bench-data-'));
  const children: CliChild[] = [];
  const closers: (() => Promise<unknown> | void)[] = [];
  try {
    const frontend = `tcp://127.0.0.1:${await freePort()}`;
    const backend = `tcp://127.0.0.1:${await freePort()}`;
    o.progress(`inference rounds: starting zerve up (1 worker x ${threads} threads, capacity ${capacity}), a zerve web process and raw`);
    const up = new CliChild([
      'up', '--models', repository.path, '--data', data, '--frontend', frontend, '--backend', backend, '--http', '0',
      '--workers', '1', '--threads', String(threads), '--capacity', String(capacity), '--training-workers', '0', '--samples', data,
    ]);
    children.push(up);
    const web = new CliChild(['web', '--broker', frontend, '--http', '0']);
    children.push(web);
    const upUrl = new URL((await outputLine(up, /zerve: web app at (\S+)/))[1]!);
    const webUrl = new URL((await outputLine(web, /zerve: web app at (\S+)/))[1]!);
    const client = new ZerveClient({ broker: frontend, timeoutMs: 120_000 });
    closers.push(() => client.close());
    const service = classifyService(o.model);
    let workerPid: number | undefined;
    for (const deadline = Date.now() + 60_000; workerPid === undefined; await sleep(100)) {
      if (Date.now() > deadline) throw new Error(`no inference worker registered: ${up.recentOutput}`);
      const workers = await client.workers().catch(() => []);
      workerPid = workers.find((w) => w.kind === 'inference' && w.services.includes(service))?.pid ?? undefined;
    }
    const raw = await RawClassifier.load({ modelPath: path.join(o.modelDir, 'model.onnx'), threads, allowSpinning: false });
    closers.push(() => raw.release());
    const agent = new Agent({ keepAlive: true, maxSockets: Math.max(...o.httpConcurrencies, capacity) });
    closers.push(() => agent.destroy());
    const query = `/api/classify?model=${encodeURIComponent(o.model)}&topk=1&cache=false`;
    const urls = { 'http (zerve up)': new URL(query, upUrl), 'http (own process)': new URL(query, webUrl) };
    /** Round trip minus the worker's totalMs of each cluster request since last cleared. */
    const outside: number[] = [];
    const tasks = (bytes: Buffer): Record<InferencePath, () => Promise<number>> => ({
      raw: () => raw.classify(bytes),
      cluster: async () => {
        const started = performance.now();
        const reply = await client.classify(o.model, bytes, { topk: 1, cache: false });
        const workerMs = reply.timings.totalMs;
        if (workerMs !== undefined) outside.push(performance.now() - started - workerMs);
        return reply.predictions[0]!.index;
      },
      'http (zerve up)': () => postImage(agent, urls['http (zerve up)'], bytes),
      'http (own process)': () => postImage(agent, urls['http (own process)'], bytes),
    });
    // CPU counted per path: raw is this process; the others add zerve up (broker, web app) and the
    // worker, and the own-process web app its process.
    const pids: Record<InferencePath, number[]> = {
      raw: [process.pid],
      cluster: [process.pid, up.pid, workerPid],
      'http (zerve up)': [process.pid, up.pid, workerPid],
      'http (own process)': [process.pid, up.pid, workerPid, web.pid],
    };
    const checked = (task: () => Promise<number>) => async () => {
      const top = await task();
      if (top !== o.expected) throw new Error(`classified as ${top}, expected ${o.expected}`);
    };
    for (const [image, bytes] of o.images) {
      for (const p of INFERENCE_PATHS) await checked(tasks(bytes)[p])().catch((err: Error) => Promise.reject(new Error(`${p}, ${image}: ${err.message}`)));
    }

    const result: InferenceRoundsResult = {
      rounds: o.rounds,
      latency: {},
      outsideWorkerMs: {},
      saturated: {},
      http: {},
      idle: { up: [], worker: [] },
      idleOverall: { up: 0, worker: 0 },
      goals: [],
    };
    const push = (into: PerRound, r: LoadResult) => {
      if (r.errors > 0) throw new Error(`errors: ${r.firstError}`);
      into.p50Ms.push(r.p50Ms);
      into.perSecond.push(r.perSecond);
      into.cpuMsPerImage.push(r.cpuMsPerTask ?? Number.NaN);
    };
    const fresh = (): PerRound => ({ p50Ms: [], perSecond: [], cpuMsPerImage: [] });
    const run = (p: InferencePath, bytes: Buffer, concurrency: number) =>
      runLoad(checked(tasks(bytes)[p]), { concurrency, warmUpMs: Math.min(300, o.windowMs / 4), durationMs: o.windowMs, cpuPids: pids[p] });
    /** images/s of one run of `httpImage` at a concurrency; from BURST_FROM on, one burst answered in full. */
    const throughput = async (p: InferencePath, concurrency: number): Promise<number> => {
      const task = checked(tasks(o.images.get(o.httpImage)!)[p]);
      if (concurrency < BURST_FROM) return (await run(p, o.images.get(o.httpImage)!, concurrency)).perSecond;
      const started = performance.now();
      await Promise.all(Array.from({ length: concurrency }, task));
      return (concurrency * 1000) / (performance.now() - started);
    };

    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 === 0 ? INFERENCE_PATHS : [...INFERENCE_PATHS].reverse();
      for (const [image, bytes] of o.images) {
        o.progress(`inference rounds: round ${round + 1} of ${o.rounds}, ${image}, concurrency 1 and ${capacity}`);
        const latency = (result.latency[image] ??= {});
        const saturated = (result.saturated[image] ??= {});
        for (const p of order) {
          outside.length = 0;
          push((latency[p] ??= fresh()), await run(p, bytes, 1));
          if (p === 'cluster') (result.outsideWorkerMs[image] ??= []).push(median(outside));
        }
        for (const p of order) {
          if (p === 'raw' || p === 'cluster') push((saturated[p] ??= fresh()), await run(p, bytes, capacity));
        }
      }
      for (const concurrency of o.httpConcurrencies) {
        o.progress(`inference rounds: round ${round + 1} of ${o.rounds}, HTTP against ZeroMQ, ${o.httpImage}, concurrency ${concurrency}`);
        const row = (result.http[concurrency] ??= {});
        for (const p of order) {
          if (p === 'raw') continue;
          // Concurrency 1 was measured above on the same image in this round.
          const same = concurrency === 1 ? result.latency[o.httpImage]?.[p]?.perSecond[round] : undefined;
          (row[p] ??= []).push(same ?? (await throughput(p, concurrency)));
        }
      }
      o.progress(`inference rounds: round ${round + 1} of ${o.rounds}, idle ${idleMs} ms`);
      const [upIdle, workerIdle] = await idleCpu([up.pid, workerPid], idleMs);
      result.idle.up.push(upIdle!);
      result.idle.worker.push(workerIdle!);
    }
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    result.idleOverall = { up: mean(result.idle.up), worker: mean(result.idle.worker) };
    result.goals = judge(result, o);
    return result;
  } finally {
    for (const close of closers.reverse()) await Promise.resolve(close()).catch(() => undefined);
    await Promise.all(children.map((c) => c.stop()));
    await repository.remove();
    await rm(data, { recursive: true, force: true });
  }
}

/** Median over rounds of `mine[i]` combined with `theirs[i]` (a ratio or a difference of the same round). */
export function perRoundMedian(mine: number[], theirs: number[], combine: (a: number, b: number) => number): number {
  // A round whose run timed no request (one longer than the window, on a loaded machine) has NaN: left out.
  return median(mine.map((x, i) => combine(x, theirs[i]!)).filter(Number.isFinite));
}

function judge(r: InferenceRoundsResult, o: InferenceRoundsOptions): InferenceGoal[] {
  const goals: InferenceGoal[] = [];
  const goal = (what: string, value: number, target: number, sense: '<=' | '>=') =>
    goals.push({ what, value, target, sense, met: sense === '<=' ? value <= target : value >= target });
  for (const image of o.images.keys()) {
    const lat = r.latency[image]!;
    goal(`${image}: cluster p50 - raw p50 at concurrency 1, ms`, perRoundMedian(lat.cluster!.p50Ms, lat.raw!.p50Ms, (a, b) => a - b), INFERENCE_GOALS.addedP50Ms, '<=');
  }
  for (const image of o.images.keys()) {
    const sat = r.saturated[image]!;
    goal(
      `${image}: CPU per image, raw / cluster (client + zerve up + worker) at concurrency ${o.capacity ?? 4}`,
      perRoundMedian(sat.raw!.cpuMsPerImage, sat.cluster!.cpuMsPerImage, (a, b) => a / b),
      INFERENCE_GOALS.cpuEfficiency,
      '>=',
    );
  }
  for (const concurrency of o.httpConcurrencies) {
    const row = r.http[concurrency]!;
    for (const p of ['http (zerve up)', 'http (own process)'] as const) {
      goal(`${o.httpImage}: ${p} / ZerveClient images/s at concurrency ${concurrency}`, perRoundMedian(row[p]!, row.cluster!, (a, b) => a / b), INFERENCE_GOALS.httpToZeromq, '>=');
    }
  }
  return goals;
}


/** The section's tables: per-round medians (and ranges) of each figure, then each goal met or not. */
export function inferenceRoundsReport(r: InferenceRoundsResult, o: Pick<InferenceRoundsOptions, 'capacity' | 'httpImage' | 'httpConcurrencies'>): (string | ReportTable)[] {
  const out: (string | ReportTable)[] = [];
  const latency = new ReportTable(['image', 'path', 'p50 ms, conc. 1', 'CPU ms/image, conc. 1', `images/s, conc. ${o.capacity ?? 4}`, `CPU ms/image, conc. ${o.capacity ?? 4}`]);
  for (const [image, paths] of Object.entries(r.latency)) {
    for (const p of INFERENCE_PATHS) {
      const sat = p === 'raw' || p === 'cluster' ? r.saturated[image]?.[p] : undefined;
      latency.push([image, p, spread(paths[p]?.p50Ms, 2), spread(paths[p]?.cpuMsPerImage, 2), spread(sat?.perSecond), spread(sat?.cpuMsPerImage, 2)]);
    }
  }
  out.push(latency);
  out.push('');
  out.push(
    "Outside the worker at concurrency 1 (the client's round trip minus the worker's own totalMs: client -> broker -> worker and back, the reply's JSON), " +
      `median (range) over rounds: ${Object.entries(r.outsideWorkerMs).map(([image, ms]) => `${image} ${spread(ms, 2)} ms`).join(', ')}.`,
  );
  out.push('');
  const http = new ReportTable(['conc.', 'ZerveClient images/s', 'http (zerve up) images/s', 'http (own process) images/s', 'zerve up / ZerveClient', 'own process / ZerveClient']);
  for (const concurrency of o.httpConcurrencies) {
    const row = r.http[concurrency] ?? {};
    const ratio = (p: InferencePath) => (row[p] && row.cluster ? fixed(perRoundMedian(row[p], row.cluster, (a, b) => a / b), 2) : '-');
    http.push([concurrency, spread(row.cluster), spread(row['http (zerve up)']), spread(row['http (own process)']), ratio('http (zerve up)'), ratio('http (own process)')]);
  }
  out.push(`HTTP POST /api/classify against ZerveClient.classify, ${o.httpImage}, same workers, same rounds (from concurrency ${BURST_FROM} on, one burst answered in full):`);
  out.push(http);
  out.push('');
  out.push(
    `Idle (no requests), CPU ms per second over all ${r.rounds} idle periods together: zerve up process (broker, web app, jobs service) ${fixed(r.idleOverall.up, 1)}, ` +
      `inference worker ${fixed(r.idleOverall.worker, 1)}; each round (10 ms clock ticks): ${each(r.idle.up, 0)} and ${each(r.idle.worker, 0)}.`,
  );
  out.push('');
  out.push(`Goals, each on the median of ${r.rounds} per-round ratios or differences:`);
  for (const g of r.goals) out.push(`- ${g.what}: ${fixed(g.value, 2)} (goal ${g.sense} ${g.target}) ${g.met ? 'met' : 'NOT met'}`);
  return out;
}
