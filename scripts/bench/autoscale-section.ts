/**
 * `npm run bench -- autoscale`: `zerve up --autoscale 1:4` through a step load (idle, a burst, a
 * plateau, idle). Samples the inference workers and the load (in flight + queued) from the broker,
 * times every request by the phase it started in, counts requests lost (any failure), and draws the
 * run as an SVG.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ZerveClient } from '../../shared/client.ts';
import { ZerveError } from '../../shared/errors.ts';
import { makeBenchRepository } from '../../test/helpers/bench-repository.ts';
import { CliChild } from './cli-child.ts';
import { percentile } from './percentile.ts';
import { Heading, type BenchSection } from './bench-section.ts';
import { ReportTable } from './report-table.ts';
import { fixed, ratio } from './report-format.ts';

export interface AutoscaleBenchOptions {
  /** `../shared/fixtures`: the squeezenet-fp32 model and the kitten. */
  fixtures: string;
  quick: boolean;
  /** Where autoscale.svg goes. */
  resultsDir: string;
  progress: (message: string) => void;
}

interface Phase {
  name: string;
  /** Seconds from the start of the run. */
  startS: number;
  endS: number;
  requests: number;
  lost: number;
  /** NaN when no request ended in the phase (null in the JSON). */
  p50Ms: number;
  p99Ms: number;
}

interface Sample {
  atS: number;
  workers: number;
  draining: number;
  load: number;
}

/** One setup through the step load. */
export interface StepLoadRun {
  setup: string;
  phases: Phase[];
  samples: Sample[];
  lost: number;
  /** Inference worker processes serving, summed over the run: what the setup cost. */
  workerSeconds: number;
}

export interface AutoscaleSection {
  settings: { bounds: string; upscaleDelayMs: number; downscaleDelayMs: number; lookBackMs: number; burst: number; plateauConcurrency: number; plateauMs: number; idleMs: number; finalIdleMs: number };
  /** The autoscaled cluster first, then the fixed baselines of the same run. */
  runs: StepLoadRun[];
  svg: string;
}

const MODEL = 'squeezenet-fp32';
const TABBY = 'tabby, tabby cat';

type Settings = AutoscaleSection['settings'];

export async function benchAutoscale(options: AutoscaleBenchOptions): Promise<AutoscaleSection> {
  const q = options.quick;
  // The default up delay and look-back; a shorter down delay than the default 2 minutes, so the run shows the shrink in its length.
  const settings: Settings = {
    bounds: '1:4',
    upscaleDelayMs: 5000,
    downscaleDelayMs: q ? 5000 : 20_000,
    lookBackMs: 10_000,
    burst: q ? 300 : 1000,
    plateauConcurrency: 12,
    plateauMs: q ? 10_000 : 40_000,
    idleMs: q ? 3000 : 10_000,
    finalIdleMs: q ? 25_000 : 60_000,
  };
  const [min, max] = settings.bounds.split(':').map(Number) as [number, number];
  const autoscale = [
    '--autoscale', settings.bounds, '--upscale-delay-ms', String(settings.upscaleDelayMs),
    '--downscale-delay-ms', String(settings.downscaleDelayMs), '--look-back-ms', String(settings.lookBackMs),
  ];
  // The same step load on fixed clusters of MIN and MAX workers, one after the other: they would share the cores if run at once.
  const runs = [
    await runStepLoad(`--autoscale ${settings.bounds}`, autoscale, min, settings, options),
    await runStepLoad(`--workers ${min}`, ['--workers', String(min)], min, settings, options),
    await runStepLoad(`--workers ${max}`, ['--workers', String(max)], max, settings, options),
  ];
  const svg = drawRun(runs[0]!.phases, runs[0]!.samples, settings.bounds);
  await writeFile(path.join(options.resultsDir, 'autoscale.svg'), svg);
  return { settings, runs, svg: 'autoscale.svg' };
}

async function runStepLoad(setup: string, args: string[], ready: number, settings: Settings, options: AutoscaleBenchOptions): Promise<StepLoadRun> {
  const repository = await makeBenchRepository(MODEL, path.join(options.fixtures, 'models', MODEL));
  const data = await mkdtemp(path.join(tmpdir(), 'zerve-bench-autoscale-'));
  const frontend = `tcp://127.0.0.1:${await freePort()}`;
  const up = new CliChild([
    'up', '--models', repository.path, '--data', data, '--training-workers', '0', '--threads', '1', '--http', '0',
    '--frontend', frontend, '--backend', `tcp://127.0.0.1:${await freePort()}`, ...args,
  ]);
  const client = new ZerveClient({ broker: frontend, timeoutMs: 300_000, retries: 0 });
  const kitten = readFileSync(path.join(options.fixtures, 'images', 'kitten.png'));
  const samples: Sample[] = [];
  const timings: { atS: number; ms: number; ok: boolean }[] = [];
  let t0 = 0;
  const nowS = () => (performance.now() - t0) / 1000;
  let sampling = true;
  try {
    for (;;) {
      const workers = await client.workers({ timeoutMs: 2000 }).catch(() => []);
      if (workers.filter((w) => w.kind === 'inference' && w.services.includes(`classify.${MODEL}`)).length >= ready) break;
      if (!up.running) throw new Error(`zerve up exited: ${up.recentOutput}`);
      await sleep(200);
    }
    options.progress(`autoscale: zerve up ${setup} is serving; idle, burst of ${settings.burst}, plateau of ${settings.plateauConcurrency} for ${settings.plateauMs} ms, idle`);
    t0 = performance.now();
    const sampler = (async () => {
      while (sampling) {
        const [workers, services] = await Promise.all([client.workers({ timeoutMs: 2000 }), client.services({ timeoutMs: 2000 })]).catch(() => [[], []] as const);
        const inference = workers.filter((w) => w.kind === 'inference');
        const offered = new Set(inference.flatMap((w) => w.services));
        const load = services.filter((s) => offered.has(s.name)).reduce((sum, s) => sum + s.inFlight + s.queued, 0);
        samples.push({ atS: nowS(), workers: inference.filter((w) => w.draining !== true).length, draining: inference.filter((w) => w.draining === true).length, load });
        await sleep(250);
      }
    })();
    const classify = async () => {
      const atS = nowS();
      const started = performance.now();
      let ok = false;
      try {
        const reply = await client.classify(MODEL, kitten, { cache: false });
        ok = reply.predictions[0]?.label === TABBY;
      } catch (err) {
        options.progress(`autoscale: a request failed: ${ZerveError.from(err).code}`);
      }
      timings.push({ atS, ms: performance.now() - started, ok });
    };
    const phases: { name: string; startS: number; endS: number }[] = [];
    const phase = async (name: string, run: () => Promise<unknown>) => {
      const startS = nowS();
      options.progress(`autoscale: ${setup}: ${name}`);
      await run();
      phases.push({ name, startS, endS: nowS() });
    };
    await phase('idle', () => sleep(settings.idleMs));
    await phase(`burst of ${settings.burst}`, () => Promise.all(Array.from({ length: settings.burst }, classify)));
    await phase(`plateau, ${settings.plateauConcurrency} at once`, async () => {
      const end = performance.now() + settings.plateauMs;
      await Promise.all(
        Array.from({ length: settings.plateauConcurrency }, async () => {
          while (performance.now() < end) await classify();
        }),
      );
    });
    await phase('idle', () => sleep(settings.finalIdleMs));
    sampling = false;
    await sampler;
    const rows: Phase[] = phases.map((p) => {
      const inPhase = timings.filter((t) => t.atS >= p.startS && t.atS < p.endS);
      const ms = inPhase.map((t) => t.ms).sort((a, b) => a - b);
      return { ...p, requests: inPhase.length, lost: inPhase.filter((t) => !t.ok).length, p50Ms: percentile(ms, 0.5), p99Ms: percentile(ms, 0.99) };
    });
    let workerSeconds = 0;
    samples.forEach((x, i) => (workerSeconds += i === 0 ? 0 : samples[i - 1]!.workers * (x.atS - samples[i - 1]!.atS)));
    return { setup, phases: rows, samples, lost: timings.filter((t) => !t.ok).length, workerSeconds };
  } finally {
    sampling = false;
    await client.close();
    await up.stop(30_000);
    await repository.remove();
    await rm(data, { recursive: true, force: true });
  }
}

export function autoscaleReport(section: AutoscaleSection): (string | ReportTable)[] {
  const s = section.settings;
  const [auto, ...baselines] = section.runs as [StepLoadRun, ...StepLoadRun[]];
  const phases = new ReportTable(['phase', 'setup', 'requests', 'lost', 'p50 ms', 'p99 ms', 'p99 vs autoscale', 'workers (min-max)']);
  auto.phases.forEach((p, i) => {
    for (const run of section.runs) {
      const ph = run.phases[i]!;
      const during = run.samples.filter((x) => x.atS >= ph.startS && x.atS < ph.endS).map((x) => x.workers);
      const span = during.length > 0 ? `${Math.min(...during)}-${Math.max(...during)}` : '-';
            phases.push([run === auto ? `${ph.name} (${ph.startS.toFixed(0)}-${ph.endS.toFixed(0)} s)` : '', run.setup, ph.requests, ph.lost, fixed(ph.p50Ms, 0), fixed(ph.p99Ms, 0), ratio(ph.p99Ms, p.p99Ms), span]);
    }
  });
  const cost = new ReportTable(['setup', 'requests lost', 'worker-seconds', 'vs autoscale']);
  for (const run of section.runs) cost.push([run.setup, run.lost, run.workerSeconds.toFixed(0), `${(run.workerSeconds / auto.workerSeconds).toFixed(2)}x`]);
  const timeline = new ReportTable(['s', 'in flight + queued', 'workers', 'draining']);
  let last = '';
  let lastPrinted = -5;
  for (const x of auto.samples) {
    const key = `${x.workers}/${x.draining}`;
    // Every change of workers, and the load every 5 s between changes.
    if (key !== last || Math.floor(x.atS / 5) !== Math.floor(lastPrinted / 5)) {
      timeline.push([Number(x.atS.toFixed(1)), x.load, x.workers, x.draining]);
      last = key;
      lastPrinted = x.atS;
    }
  }
  return [
    `zerve up --autoscale ${s.bounds} (squeezenet-fp32, 1 onnxruntime thread per worker), up delay ${s.upscaleDelayMs} ms, look-back ${s.lookBackMs} ms, ` +
      `down delay ${s.downscaleDelayMs} ms (the default is 120000; shortened so the run shows the shrink), against fixed clusters (${baselines.map((b) => b.setup).join(', ')}) ` +
      `through the same step load in the same run, one after the other. Picture of the autoscaled run: bench-results/${section.svg}`,
    phases,
    'Cost: inference worker processes serving, summed over the run',
    cost,
    'Autoscaled: workers over time against the load (each change, and every 5 s):',
    timeline,
  ];
}

/** The run as a picture: the load as an area, the workers as a step line, phases as bands. */
function drawRun(phases: Phase[], samples: Sample[], bounds: string): string {
  const W = 960;
  const H = 380;
  const pad = { left: 56, right: 56, top: 44 + 14 * phases.length, bottom: 44 };
  const endS = Math.max(1, ...samples.map((s) => s.atS));
  const maxLoad = Math.max(4, ...samples.map((s) => s.load));
  const maxWorkers = Number(bounds.split(':')[1]) + 1;
  const x = (s: number) => pad.left + (s / endS) * (W - pad.left - pad.right);
  const yLoad = (v: number) => H - pad.bottom - (v / maxLoad) * (H - pad.top - pad.bottom);
  const yWorkers = (v: number) => H - pad.bottom - (v / maxWorkers) * (H - pad.top - pad.bottom);
  const loadPath = samples.map((s, i) => `${i === 0 ? 'M' : 'L'}${x(s.atS).toFixed(1)},${yLoad(s.load).toFixed(1)}`).join(' ');
  const area = samples.length > 0 ? `${loadPath} L${x(samples.at(-1)!.atS).toFixed(1)},${yLoad(0)} L${x(samples[0]!.atS).toFixed(1)},${yLoad(0)} Z` : '';
  let steps = '';
  samples.forEach((s, i) => {
    steps += i === 0 ? `M${x(s.atS).toFixed(1)},${yWorkers(s.workers).toFixed(1)}` : ` H${x(s.atS).toFixed(1)} V${yWorkers(s.workers).toFixed(1)}`;
  });
  const bands = phases
    .map((p, i) => {
      const fill = i % 2 === 0 ? '#f1f3f5' : '#ffffff';
      const label = `${i + 1}. ${p.name} (${p.startS.toFixed(0)}-${p.endS.toFixed(0)} s): ${p.requests} requests, p50 ${fixed(p.p50Ms, 0)} ms, p99 ${fixed(p.p99Ms, 0)} ms, lost ${p.lost}`;
      return `<rect x="${x(p.startS).toFixed(1)}" y="${pad.top}" width="${(x(p.endS) - x(p.startS)).toFixed(1)}" height="${H - pad.top - pad.bottom}" fill="${fill}"/>` +
        `<text x="${(x(p.startS) + 3).toFixed(1)}" y="${pad.top + 12}" font-size="11" fill="#495057">${i + 1}</text>` +
        `<text x="${pad.left}" y="${40 + i * 14}" font-size="11" fill="#495057">${escapeXml(label)}</text>`;
    })
    .join('\n');
  const ticks: string[] = [];
  for (let s = 0; s <= endS; s += endS > 120 ? 20 : 10) {
    ticks.push(`<text x="${x(s).toFixed(1)}" y="${H - pad.bottom + 16}" font-size="11" text-anchor="middle">${s}</text>`);
  }
  for (let w = 0; w <= maxWorkers; w++) {
    ticks.push(`<text x="${W - pad.right + 8}" y="${(yWorkers(w) + 4).toFixed(1)}" font-size="11">${w}</text>`);
  }
  for (const v of [0, Math.round(maxLoad / 2), Math.round(maxLoad)]) {
    ticks.push(`<text x="${pad.left - 8}" y="${(yLoad(v) + 4).toFixed(1)}" font-size="11" text-anchor="end">${v}</text>`);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif">
<rect width="${W}" height="${H}" fill="#ffffff"/>
<text x="${pad.left}" y="22" font-size="14" font-weight="600">zerve up --autoscale ${bounds}: inference workers (line, right axis) against in-flight + queued requests (area, left axis)</text>
${bands}
<path d="${area}" fill="#a5c8f7" stroke="#0a58ca" stroke-width="1"/>
<path d="${steps}" fill="none" stroke="#212529" stroke-width="2.5"/>
<line x1="${pad.left}" y1="${H - pad.bottom}" x2="${W - pad.right}" y2="${H - pad.bottom}" stroke="#495057"/>
${ticks.join('\n')}
<text x="${W / 2}" y="${H - 8}" font-size="11" text-anchor="middle">seconds</text>
</svg>
`;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** `npm run bench -- autoscale`: only when named; bench-results/autoscale[-quick].json, .md and autoscale.svg. */
export const autoscaleSection: BenchSection<AutoscaleSection> = {
  name: 'autoscale',
  namedOnly: true,
  run: (c) => benchAutoscale({ fixtures: c.fixtures, quick: c.quick, resultsDir: c.resultsDir, progress: c.progress }),
  report: (section) => [new Heading('Autoscaling on one host: a step load'), ...autoscaleReport(section)],
};
