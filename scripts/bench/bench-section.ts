/**
 * What a bench section is: a module exporting `{ name, run, report }`, listed once in sections.ts.
 * `report` gives headings without numbers; render() numbers them by the section's place in that
 * list, so no section writes "3b" by hand.
 */
import { ReportTable } from './report-table.ts';

/** What every section gets from the CLI (scripts/bench.ts). */
export interface BenchContext {
  /** `--quick`: smaller sizes and shorter windows, to check the bench end to end. */
  quick: boolean;
  /** Warm-up before each measured run (BENCH_WARMUP_MS). */
  warmUpMs: number;
  /** Each measured run (BENCH_DURATION_MS). */
  durationMs: number;
  /** ../shared/fixtures: models and images. */
  fixtures: string;
  /** bench-results/, for sections that write files of their own. */
  resultsDir: string;
  /** A progress line on stderr. */
  progress: (message: string) => void;
}

/** A numbered heading in a report; render() puts the number in front. */
export class Heading {
  constructor(readonly title: string) {}
}

/** The report: headings, lines of text and tables, rendered for the terminal and as Markdown. */
export type ReportPart = string | ReportTable | Heading;

export interface BenchSection<R = unknown> {
  /** The name on the command line (`npm run bench -- NAME`) and the key of its result in the JSON. */
  name: string;
  /** Run only when named (long, or writing files of its own). */
  namedOnly?: boolean;
  /** Sections this one also runs, so that naming both runs them once (`inference` includes `rounds`). */
  includes?: readonly string[];
  run(context: BenchContext): Promise<R>;
  report(result: R, context: BenchContext): ReportPart[];
}

/**
 * Numbers the headings of one section: `N.` when it has one, `Na.`, `Nb.`, ... when it has several.
 */
export function numberHeadings(parts: ReportPart[], sectionNumber: number): Array<string | ReportTable> {
  const count = parts.filter((p) => p instanceof Heading).length;
  let index = 0;
  return parts.map((p) => {
    if (!(p instanceof Heading)) return p;
    const letter = count > 1 ? String.fromCharCode(97 + index) : '';
    index += 1;
    return `${sectionNumber}${letter}. ${p.title}`;
  });
}

export function render(parts: Array<string | ReportTable>, markdown: boolean): string {
  return parts.map((p) => (typeof p === 'string' ? p : markdown ? `\n${p.toMarkdown()}\n` : p.toText())).join('\n');
}

/** A positive number from the environment, or `fallback` when unset. */
export function envNumber(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!(Number.isFinite(n) && n > 0)) throw new Error(`${name} must be a positive number, got ${value}`);
  return n;
}
