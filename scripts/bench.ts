/**
 * `npm run bench`: what the cluster costs against the best one process can do, and what the broker
 * costs against a direct socket. Prints tables on stdout, progress on stderr, and writes every number
 * to bench-results/bench.json (and the tables as Markdown to bench.md). BENCH_DURATION_MS and
 * BENCH_WARMUP_MS (per measurement) make the sections shorter or longer.
 *
 * This file is the CLI only. Each section is a module exporting `{ name, run, report }`
 * (bench/bench-section.ts), listed in bench/sections.ts, whose order numbers the tables.
 *
 * `npm run bench -- SECTION...` runs only those sections and writes bench-results/bench-SECTION....json
 * and .md instead; `inference` includes `rounds`. A section marked named-only (`autoscale`) runs only
 * when named, and writes SECTION[-quick].json and .md of its own. `--quick` shrinks the sizes and the
 * default warm-up and duration, to check the benchmark end to end (its files end in `-quick`; the
 * training targets are not judged).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { envNumber, numberHeadings, render, type BenchContext, type BenchSection } from './bench/bench-section.ts';
import { each } from './bench/report-format.ts';
import type { ReportTable } from './bench/report-table.ts';
import { SECTIONS } from './bench/sections.ts';

const ARGS = parseArgs({ allowPositionals: true, options: { quick: { type: 'boolean', default: false } } });
const QUICK = ARGS.values.quick === true;
const NAMES = SECTIONS.map((s) => s.name);
for (const name of ARGS.positionals) {
  if (!NAMES.includes(name)) {
    process.stderr.write(`bench: unknown section ${name}; usage: npm run bench -- [${NAMES.join('|')}]... [--quick]\n`);
    process.exit(2);
  }
}
const named = (s: BenchSection) => ARGS.positionals.includes(s.name);
/** Sections named, and those they include; all but the named-only ones when none is named. */
const SELECTED = SECTIONS.filter((s) =>
  ARGS.positionals.length === 0 ? s.namedOnly !== true : named(s) || SECTIONS.some((other) => named(other) && other.includes?.includes(s.name)),
);
const ALL = SECTIONS.every((s) => s.namedOnly === true || SELECTED.includes(s));

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const RESULTS_DIR = path.join(REPO_ROOT, 'bench-results');
const benchStarted = performance.now();

function progress(message: string): void {
  const s = Math.round((performance.now() - benchStarted) / 1000);
  process.stderr.write(`[bench ${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}] ${message}\n`);
}

const context: BenchContext = {
  quick: QUICK,
  warmUpMs: envNumber('BENCH_WARMUP_MS', QUICK ? 200 : 1000),
  durationMs: envNumber('BENCH_DURATION_MS', QUICK ? 500 : 2500),
  fixtures: path.resolve(REPO_ROOT, '..', 'shared', 'fixtures'),
  resultsDir: RESULTS_DIR,
  progress,
};

const machine = () => ({ cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version });

/** Runs `sections`, then writes `name`.json and .md and prints the report. */
async function runAndWrite(sections: BenchSection[], name: string): Promise<void> {
  const loadBefore = loadavg();
  progress(
    `${cpus().length} CPU(s), load average ${each(loadBefore, 2)}; sections: ${sections.map((s) => s.name).join(', ')}${QUICK ? ' (quick)' : ''}; ` +
      `${context.warmUpMs} ms warm-up + ${context.durationMs} ms measured per row`,
  );
  const results = new Map<BenchSection, unknown>();
  for (const section of sections) results.set(section, await section.run(context));
  const loadAfter = loadavg();
  const date = new Date().toISOString();

  await mkdir(RESULTS_DIR, { recursive: true });
  const json = {
    date,
    machine: { ...machine(), loadavgBefore: loadBefore, loadavgAfter: loadAfter },
    sections: sections.map((s) => s.name),
    quick: QUICK,
    settings: { warmUpMs: context.warmUpMs, durationMs: context.durationMs },
    ...Object.fromEntries([...results].map(([section, result]) => [section.name, result])),
  };
  const jsonFile = path.join(RESULTS_DIR, `${name}.json`);
  const markdownFile = path.join(RESULTS_DIR, `${name}.md`);
  await writeFile(jsonFile, `${JSON.stringify(json, null, 2)}\n`);

  const out: Array<string | ReportTable> = [
    `Zerve benchmark, ${date}: ${cpus().length} CPU(s) (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ` +
      `load average before ${loadBefore[0]!.toFixed(2)}, after ${loadAfter[0]!.toFixed(2)}.`,
  ];
  for (const [section, result] of results) out.push('', ...numberHeadings(section.report(result, context), SECTIONS.indexOf(section) + 1));
  await writeFile(markdownFile, `${render(out, true)}\n`);
  out.push('', `Written: ${path.relative(process.cwd(), jsonFile)}, ${path.relative(process.cwd(), markdownFile)}`);
  process.stdout.write(`${render(out, false)}\n`);
}

async function main(): Promise<void> {
  const quick = QUICK ? ['quick'] : [];
  // A named-only section writes files of its own, so a run of it never overwrites bench.json.
  for (const section of SELECTED.filter((s) => s.namedOnly === true)) await runAndWrite([section], [section.name, ...quick].join('-'));
  const shared = SELECTED.filter((s) => s.namedOnly !== true);
  if (shared.length === 0) return;
  // bench.json for a full run; a subset or a quick run gets files of its own, so it never overwrites one.
  await runAndWrite(shared, ['bench', ...(ALL ? [] : shared.filter(named).map((s) => s.name)), ...quick].join('-'));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
