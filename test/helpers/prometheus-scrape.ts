/**
 * Test helper: scrapes a `/metrics` URL over real HTTP and reads its samples. The parser is small
 * on purpose: the npm ones at hand merge the series of labelled histograms.
 */
import assert from 'node:assert/strict';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export class Scrape {
  /** Metric family names with their `# TYPE`. */
  readonly types = new Map<string, string>();
  readonly samples: Sample[] = [];

  constructor(readonly text: string) {
    for (const line of text.split('\n')) {
      if (line.startsWith('# TYPE ')) {
        const [, , name, type] = line.split(' ');
        this.types.set(name!, type!);
        continue;
      }
      if (line === '' || line.startsWith('#')) continue;
      const match = SAMPLE.exec(line);
      assert.ok(match, `not a Prometheus sample line: ${line}`);
      const labels: Record<string, string> = {};
      for (const [, key, value] of (match[2] ?? '').matchAll(LABEL)) labels[key!] = value!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      this.samples.push({ name: match[1]!, labels, value: Number(match[3]) });
    }
  }

  /** The value of the series `name` (e.g. `x_count`) whose labels include `labels`; 0 when there is none, as PromQL's `or vector(0)`. */
  value(name: string, labels: Record<string, string> = {}): number {
    const sample = this.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    return sample?.value ?? 0;
  }

  /** A histogram's count. */
  count(name: string, labels: Record<string, string> = {}): number {
    return this.value(`${name}_count`, labels);
  }
}

export async function scrape(url: string): Promise<Scrape> {
  const response = await fetch(url);
  assert.equal(response.status, 200, `GET ${url}`);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return new Scrape(await response.text());
}
