/**
 * `npm run bench -- models`: what moving a model version between hosts costs. One holder process
 * (`zerve worker inference --serve none` over a repository of squeezenet-fp32, 4.9 MB) behind a
 * `zerve broker` process; this process fetches the version with a ModelFetcher, as an inference
 * worker on another host does, into a fresh folder each time. Baseline, in the same run: copying the
 * same files locally and hashing them (what installing a local file costs at the least).
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ZerveClient } from '../../shared/client.ts';
import { logger } from '../../shared/logger.ts';
import { modelFetchService, type ModelVersionRef } from '../../shared/models.ts';
import { manifestHash, readManifest, sha256File } from '../../shared/model-exchange/model-manifest.ts';
import { ModelFetcher } from '../../shared/model-exchange/model-transfer.ts';
import { BenchCluster } from './bench-cluster.ts';
import { makeBenchRepository } from '../../test/helpers/bench-repository.ts';
import { median } from './percentile.ts';
import { Heading, type BenchSection } from './bench-section.ts';
import { ReportTable } from './report-table.ts';

export interface ModelsRow {
  setup: string;
  megabytes: number;
  /** Median of the repetitions. */
  seconds: number;
  megabytesPerSecond: number;
  /** Local copy's time over this setup's time (1 = as fast as a local copy). */
  xLocal: number;
}

export interface ModelsSection {
  model: string;
  repetitions: number;
  rows: ModelsRow[];
}


async function timed(repetitions: number, once: (folder: string) => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < repetitions; i++) {
    const folder = await mkdtemp(path.join(tmpdir(), 'zerve-bench-fetch-'));
    try {
      const started = performance.now();
      await once(folder);
      times.push((performance.now() - started) / 1000);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  }
  return median(times);
}

export async function benchModels(options: { fixtures: string; quick: boolean; progress: (message: string) => void }): Promise<ModelsSection> {
  const model = 'squeezenet-fp32';
  // One line per fetch would bury the progress lines.
  const quiet = logger.child({}, { level: 'warn' });
  const repetitions = options.quick ? 2 : 5;
  const repository = await makeBenchRepository(model, path.join(options.fixtures, 'models', model));
  const cluster = await BenchCluster.start();
  const client = new ZerveClient({ broker: cluster.frontend, timeoutMs: 60_000 });
  try {
    const versionDir = path.join(repository.path, model, '1');
    const manifest = await readManifest(versionDir, model, '1');
    const ref: ModelVersionRef = { name: model, version: '1', hash: manifestHash(manifest) };
    const bytes = manifest.files.reduce((n, f) => n + f.bytes, 0);
    const megabytes = bytes / 1e6;
    options.progress('models: starting a holder process');
    await cluster.addWorkers(['inference', '--models', repository.path, '--serve', 'none'], 1, modelFetchService(ref));
    const rows: ModelsRow[] = [];
    options.progress('models: local copy + SHA-256 (baseline)');
    const local = await timed(repetitions, async (folder) => {
      const target = path.join(folder, model, '1');
      await mkdir(target, { recursive: true });
      for (const f of manifest.files) {
        await copyFile(path.join(versionDir, f.name), path.join(target, f.name));
        await sha256File(path.join(target, f.name));
      }
    });
    rows.push({ setup: 'local copy + SHA-256 (baseline)', megabytes, seconds: local, megabytesPerSecond: megabytes / local, xLocal: 1 });
    for (const chunk of [1, 8]) {
      options.progress(`models: fetch through the broker, ${chunk} MiB chunks`);
      const seconds = await timed(repetitions, (folder) => new ModelFetcher(folder, client, { modelChunkBytes: chunk * 1024 * 1024 }, quiet).fetch(ref));
      rows.push({ setup: `fetch through the broker from a holder process, ${chunk} MiB chunks`, megabytes, seconds, megabytesPerSecond: megabytes / seconds, xLocal: local / seconds });
    }
    return { model, repetitions, rows };
  } finally {
    await client.close();
    await cluster.close();
    await repository.remove();
  }
}

export function modelsReport(section: ModelsSection): (string | ReportTable)[] {
  const table = new ReportTable(['setup', 'MB', 'seconds (median)', 'MB/s', 'x local copy']);
  for (const r of section.rows) table.push([r.setup, r.megabytes.toFixed(2), r.seconds.toFixed(3), r.megabytesPerSecond.toFixed(1), r.xLocal.toFixed(2)]);
  return [`${section.model} version 1 (model.onnx, labels.txt, config.json), ${section.repetitions} repetitions each, into a fresh folder each time`, table];
}

/** `npm run bench -- models`: a model version fetched between hosts. */
export const modelsSection: BenchSection<ModelsSection> = {
  name: 'models',
  run: (c) => benchModels({ fixtures: c.fixtures, quick: c.quick, progress: c.progress }),
  report: (section) => [new Heading('Models between hosts: a version fetched through the broker from a holder process'), ...modelsReport(section)],
};
