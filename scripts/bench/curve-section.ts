/**
 * `npm run bench -- curve`: what CURVE costs. Two brokers run side by side, one plain and one with
 * CURVE on both sockets (workers with their own allowlisted keys, clients with `--client-auth curve`),
 * each with an echo and an inference worker; every measurement alternates plain, CURVE, plain, CURVE
 * so load from elsewhere on the machine falls on both alike, and reports CURVE as a ratio of plain:
 * throughput, and CPU time per request of client, broker and worker together (which moves much less
 * than throughput when other work shares the cores).
 */
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ZerveClient } from '../../shared/client.ts';
import { generateKeyFiles } from '../../shared/curve-keys.ts';
import { ECHO_SERVICE, classifyService } from '../../shared/protocol.ts';
import { BenchCluster } from './bench-cluster.ts';
import { makeBenchRepository } from '../../test/helpers/bench-repository.ts';
import { runLoad, type LoadResult } from './load-runner.ts';
import { withProcessCpu } from './process-cpu.ts';
import { BENCH_MODEL } from './bench-model.ts';
import { Heading, type BenchSection } from './bench-section.ts';
import { ReportTable } from './report-table.ts';
import { fixed } from './report-format.ts';

export interface CurveBenchOptions {
  fixtures: string;
  /** Model served by the inference workers (a folder of `fixtures/models`). */
  model: string;
  warmUpMs: number;
  /** Measured time per setup and row, split over two alternating runs. */
  durationMs: number;
  progress: (message: string) => void;
}

/** A measured run: throughput and latency, and the CPU it cost. */
export interface CurveRun extends LoadResult {
  /** CPU time of client, broker and worker processes together per completed request, in µs (undefined without /proc). */
  cpuUsPerRequest?: number;
}

export interface CurveRow {
  what: string;
  concurrency: number;
  plain: CurveRun;
  curve: CurveRun;
  /** CURVE throughput over plain throughput. */
  ratio: number;
  /** CURVE CPU per request over plain CPU per request. */
  cpuRatio?: number;
}

export interface CurveSection {
  rows: CurveRow[];
}

const TABBY = 281;

interface MeasuredRun {
  load: LoadResult;
  cpuUs?: number;
}

/** Runs `a` and `b` alternately twice each and merges each side's two runs. */
async function alternate(a: () => Promise<MeasuredRun>, b: () => Promise<MeasuredRun>): Promise<[CurveRun, CurveRun]> {
  const runs: MeasuredRun[][] = [[], []];
  for (let i = 0; i < 2; i++) {
    runs[0]!.push(await a());
    runs[1]!.push(await b());
  }
  const merge = ([{ load: x, cpuUs: cx }, { load: y, cpuUs: cy }]: MeasuredRun[]): CurveRun => ({
    ...x,
    completed: x.completed + y.completed,
    errors: x.errors + y.errors,
    durationMs: x.durationMs + y.durationMs,
    perSecond: (x.completed + y.completed) / ((x.durationMs + y.durationMs) / 1000),
    p50Ms: (x.p50Ms + y.p50Ms) / 2,
    p99Ms: Math.max(x.p99Ms, y.p99Ms),
    ...(cx !== undefined && cy !== undefined ? { cpuUsPerRequest: (cx + cy) / (x.completed + y.completed) } : {}),
  });
  return [merge(runs[0]!), merge(runs[1]!)];
}

export async function benchCurve(o: CurveBenchOptions): Promise<CurveSection> {
  const keys = await mkdtemp(path.join(tmpdir(), 'zerve-bench-keys-'));
  const repository = await makeBenchRepository(o.model, path.join(o.fixtures, 'models', o.model));
  const clusters: BenchCluster[] = [];
  const clients: ZerveClient[] = [];
  try {
    for (const name of ['broker', 'worker']) await generateKeyFiles(name, keys);
    const allowed = path.join(keys, 'workers');
    await mkdir(allowed);
    await copyFile(path.join(keys, 'worker.pub'), path.join(allowed, 'worker.pub'));
    o.progress('CURVE cost: starting a plain and a CURVE broker');
    const plain = await BenchCluster.start();
    clusters.push(plain);
    const curveClient = { brokerKey: path.join(keys, 'broker.pub'), clientAuth: 'curve' };
    const curve = await BenchCluster.start(['--curve-key', path.join(keys, 'broker.key'), '--authorized-workers', allowed, '--client-auth', 'curve'], curveClient);
    clusters.push(curve);
    const workerKeys = ['--curve-key', path.join(keys, 'worker.key'), '--broker-key', path.join(keys, 'broker.pub')];
    const inference = ['inference', '--models', repository.path, '--threads', '2', '--capacity', '2'];
    const pids = new Map<BenchCluster, Record<string, number>>();
    for (const [cluster, extra] of [[plain, []], [curve, workerKeys]] as const) {
      o.progress(`CURVE cost: echo and inference workers on the ${cluster === plain ? 'plain' : 'CURVE'} broker`);
      const [echo] = await cluster.addWorkers(['echo', '--capacity', '64', ...extra], 1, ECHO_SERVICE);
      const [classifier] = await cluster.addWorkers([...inference, ...extra], 1, classifyService(o.model));
      pids.set(cluster, { client: process.pid, broker: cluster.broker.pid, echo: echo!.pid, inference: classifier!.pid });
    }
    const [plainClient, curveClientSocket] = [plain, curve].map((c) => new ZerveClient({ ...c.clientOptions, broker: c.frontend }));
    clients.push(plainClient!, curveClientSocket!);
    const image = await readFile(path.join(o.fixtures, 'images', 'kitten.png'));
    for (const client of clients) {
      const top = (await client.classify(o.model, image, { topk: 1 })).predictions[0]?.index;
      if (top !== TABBY) throw new Error(`CURVE cost: kitten.png classified as ${top}, expected ${TABBY}`);
    }
    const payload = Buffer.alloc(64, 0x61);
    const tasks: Array<{ what: string; concurrency: number; task: (c: ZerveClient) => () => Promise<unknown> }> = [
      { what: 'echo, 64-byte body', concurrency: 1, task: (c) => () => c.request(ECHO_SERVICE, [payload]) },
      { what: 'echo, 64-byte body', concurrency: 16, task: (c) => () => c.request(ECHO_SERVICE, [payload]) },
      { what: `classify kitten.png (${o.model})`, concurrency: 1, task: (c) => () => c.classify(o.model, image, { topk: 1, cache: false }) },
      { what: `classify kitten.png (${o.model})`, concurrency: 4, task: (c) => () => c.classify(o.model, image, { topk: 1, cache: false }) },
    ];
    const rows: CurveRow[] = [];
    for (const { what, concurrency, task } of tasks) {
      o.progress(`CURVE cost: ${what}, concurrency ${concurrency}, plain and CURVE alternating`);
      const load = (client: ZerveClient, cluster: BenchCluster) => async (): Promise<MeasuredRun> => {
        await runLoad(task(client), { concurrency, warmUpMs: 0, durationMs: o.warmUpMs / 2 });
        const { result, cpuUs } = await withProcessCpu(pids.get(cluster)!, () => runLoad(task(client), { concurrency, warmUpMs: 0, durationMs: o.durationMs / 2 }));
        const values = Object.values(cpuUs);
        return { load: result, ...(values.every((v) => v !== undefined) ? { cpuUs: values.reduce((a, b) => a! + b!, 0) } : {}) };
      };
      const [p, c] = await alternate(load(plainClient!, plain), load(curveClientSocket!, curve));
      const cpuRatio = p.cpuUsPerRequest && c.cpuUsPerRequest ? c.cpuUsPerRequest / p.cpuUsPerRequest : undefined;
      rows.push({ what, concurrency, plain: p, curve: c, ratio: c.perSecond / p.perSecond, ...(cpuRatio !== undefined ? { cpuRatio } : {}) });
    }
    return { rows };
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(clusters.map((c) => c.close()));
    await repository.remove();
    await rm(keys, { recursive: true, force: true });
  }
}

export function curveReport(section: CurveSection): Array<string | ReportTable> {
  const table = new ReportTable(['request', 'conc.', 'plain /s', 'CURVE /s', 'x plain', 'plain p50 ms', 'CURVE p50 ms', 'plain CPU us/req', 'CURVE CPU us/req', 'CPU x plain', 'errors']);
  for (const r of section.rows) {
    table.push([
      r.what,
      r.concurrency,
      fixed(r.plain.perSecond),
      fixed(r.curve.perSecond),
      fixed(r.ratio, 2),
      fixed(r.plain.p50Ms, 2),
      fixed(r.curve.p50Ms, 2),
      fixed(r.plain.cpuUsPerRequest, 0),
      fixed(r.curve.cpuUsPerRequest, 0),
      fixed(r.cpuRatio, 2),
      r.plain.errors + r.curve.errors,
    ]);
  }
  return [table];
}

/** `npm run bench -- curve`: what CURVE costs. */
export const curveSection: BenchSection<CurveSection> = {
  name: 'curve',
  run: (c) => benchCurve({ fixtures: c.fixtures, model: BENCH_MODEL, warmUpMs: c.warmUpMs, durationMs: c.durationMs, progress: c.progress }),
  report: (section) => [
    new Heading(
      'CURVE cost: a plain broker and a CURVE broker (both sockets, allowlisted worker key) side by side, each with an echo and an inference worker; runs alternate plain, CURVE, plain, CURVE',
    ),
    ...curveReport(section),
  ],
};
