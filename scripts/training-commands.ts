/**
 * The training part of the `zerve` CLI: `worker training`, `datasets add|list`, `train` and
 * `runs list|show|compare`, plus the built-in `digits` model `zerve up` trains on an empty
 * repository. Registered by scripts/zerve.ts.
 *
 * `zerve runs ...` asks every training worker's run store through the broker (shared/cluster-runs.ts),
 * or reads one run store (`<data>/runs.sqlite`) straight from `--data DIR` (offline).
 */
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { gzipSync } from 'node:zlib';
import { SingleBar } from 'cli-progress';
import Table from 'cli-table3';
import { Option, type Command } from 'commander';
import tar from 'tar-stream';
import { ZerveClient } from '../shared/client.ts';
import { ClusterRuns, experimentRuns } from '../shared/cluster-runs.ts';
import { clusterDatasets } from '../shared/cluster-datasets.ts';
import type { DatasetStore } from '../workers/training/dataset-store.ts';
import { DEFAULT_CLIENT_OPTIONS, DEFAULT_TRAINING_WORKER_OPTIONS, resolveOptions, type CurveOptions } from '../shared/config.ts';
import { ZerveError } from '../shared/errors.ts';
import { jobResult, submitJob, watchJob } from '../shared/job-client.ts';
import { encodeJson } from '../shared/messages.ts';
import { isIdempotencyKey } from '../shared/idempotency-key.ts';
import { DATASETS_ADD, DIGITS_REQUEST, requestTraining, trainingJobFrames, type DatasetSummary, type RunRecord, type TrainHeader, type TrainProgressMessage, type TrainResultMessage } from '../shared/training.ts';
import { onShutdown, parseInteger, reportError, withClient } from './cli-support.ts';
import { addMetricsOptions, serveMetrics } from './metrics-flags.ts';
// The stores and the worker are imported when a command needs them (see scripts/zerve.ts).
import type { ExperimentStore } from '../shared/store/experiment-store.ts';
import { logger } from '../shared/logger.ts';

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `zerve train`'s flags as commander parses them (integers through parseInteger, lists through collect). */
interface TrainFlags extends Record<string, unknown> {
  dataset: string;
  name: string;
  family?: 'mlp' | 'transfer';
  backbone?: string;
  head?: 'linear' | 'mlp';
  param?: string[];
  grid?: string[];
  random?: number;
  range?: string[];
  epochs?: number;
  split?: string;
  seed?: number;
  notifyWebhook?: string;
  notifyEmail?: string[];
  json?: boolean;
}

/** Shows training progress on stderr: a bar on a terminal, one line per epoch otherwise. */
export class TrainingProgressView {
  private bar?: SingleBar;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  update(message: TrainProgressMessage): void {
    if (message.type === 'started') {
      const what = message.family === 'transfer' ? `transfer learning on ${message.backbone ?? 'a backbone'}` : message.family === 'mlp' ? 'an MLP on pixels' : '';
      this.stream.write(`training ${message.experimentId} on ${message.host} (pid ${message.pid}), ${what ? `${what}, ` : ''}${message.runs ?? 1} run(s)\n`);
      return;
    }
    if (message.type === 'features') {
      if (!this.stream.isTTY && message.done === message.total) this.stream.write(`features ${message.done}/${message.total}\n`);
      return;
    }
    const fraction = message.elapsedMs / Math.max(1, message.elapsedMs + message.etaMs);
    const payload = {
      what: message.phase === 'refit' ? 'refit' : `run ${message.run}/${message.runs}`,
      epochs: `${message.epoch}/${message.epochs}`,
      loss: message.loss.toFixed(4),
      val: message.phase === 'refit' ? '  -  ' : message.valAccuracy.toFixed(4),
      eta: `${Math.round(message.etaMs / 1000)}s`,
    };
    if (!this.stream.isTTY) {
      this.stream.write(`${payload.what} epoch ${payload.epochs} loss ${payload.loss} val acc ${payload.val} elapsed ${Math.round(message.elapsedMs / 1000)}s eta ${payload.eta}\n`);
      return;
    }
    if (!this.bar) {
      this.bar = new SingleBar({ stream: this.stream, format: '{what} epoch {epochs} loss {loss} val acc {val} |{bar}| {percentage}% eta {eta}', hideCursor: true });
      this.bar.start(100, 0, payload);
    }
    this.bar.update(Math.round(fraction * 100), payload);
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

/** Prints a training result for people. */
export function formatTrainResult(result: TrainResultMessage): string {
  const lines = [
    `experiment ${result.experimentId}: ${result.runs.length} run(s) in ${(result.elapsedMs / 1000).toFixed(1)} s`,
    `best ${result.best.runId} ${JSON.stringify(result.best.params)} val acc ${result.best.valAccuracy.toFixed(4)}`,
    `test accuracy ${result.test.accuracy.toFixed(4)}, macro F1 ${result.test.macroF1.toFixed(4)}`,
  ];
  if (result.model) lines.push(`model ${result.model.name} version ${result.model.version} (served as classify.${result.model.name})`);
  return lines.join('\n') + '\n';
}

/** `--split holdout:0.2|kfold:5|test` as the request's split. */
function parseSplit(text: string): TrainHeader['split'] {
  const [kind, value] = text.split(':');
  if (kind === 'test' && value === undefined) return { kind: 'explicit' };
  const n = Number(value);
  if (kind === 'holdout' && n > 0 && n < 1) return { kind: 'holdout', testFraction: n };
  if (kind === 'kfold' && Number.isInteger(n) && n >= 2) return { kind: 'auto', folds: n };
  throw new ZerveError('BAD_REQUEST', `--split must be holdout:FRACTION, kfold:K or test; got ${text}`);
}

function parseParams(specs: string[]): Record<string, number | string> {
  const params: Record<string, number | string> = {};
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq < 1) throw new ZerveError('BAD_REQUEST', `--param must be key=value; got ${spec}`);
    const value = spec.slice(eq + 1);
    params[spec.slice(0, eq)] = value !== '' && Number.isFinite(Number(value)) ? Number(value) : value;
  }
  return params;
}

/** A folder of class folders as a tar.gz (symlinks and special files left out: the store would skip them). */
async function packFolder(folder: string): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  const walk = async (dir: string): Promise<void> => {
    for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) pack.entry({ name: relative(folder, full).split(sep).join('/') }, await readFile(full));
    }
  };
  await walk(folder);
  pack.finalize();
  await ended;
  return gzipSync(Buffer.concat(chunks));
}

function runsTable(runs: RunRecord[], format: string): string {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r.params)))].sort();
  const head = ['run', 'status', 'dataset', 'seed', ...keys, 'val acc', 'val loss', 'best epoch', 'test acc', 'model', 'seconds'];
  const rows = runs.map((r) => {
    const test = r.test as { accuracy?: number } | undefined;
    return [
      r.id,
      r.status,
      r.datasetId.length > 12 ? r.datasetId.slice(0, 12) : r.datasetId,
      String(r.seed),
      ...keys.map((k) => (r.params[k] === undefined ? '' : String(r.params[k]))),
      r.valAccuracy === null ? '' : r.valAccuracy.toFixed(4),
      r.valLoss === null ? '' : r.valLoss.toFixed(4),
      r.bestEpoch === null ? '' : String(r.bestEpoch),
      test?.accuracy === undefined ? '' : test.accuracy.toFixed(4),
      r.modelName ? `${r.modelName}@${r.modelVersion}` : '',
      r.durationMs === null ? '' : (r.durationMs / 1000).toFixed(1),
    ];
  });
  if (format === 'markdown') {
    const line = (cells: string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
    return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
  }
  if (format === 'latex') {
    const esc = (c: string) => c.replace(/([\\&%$#_{}])/g, '\\$1');
    return (
      [`\\begin{tabular}{${head.map(() => 'l').join('')}}`, '\\hline', head.map(esc).join(' & ') + ' \\\\', '\\hline', ...rows.map((r) => r.map(esc).join(' & ') + ' \\\\'), '\\hline', '\\end{tabular}'].join('\n') +
      '\n'
    );
  }
  const table = new Table({ head });
  for (const row of rows) table.push(row);
  return table.toString() + '\n';
}

/** The datasets stored in one data folder (names live in the training worker's run store, so none here). */
async function localDatasets(data: string): Promise<DatasetSummary[]> {
  const { DatasetStore } = await import('../workers/training/dataset-store.ts');
  const store: DatasetStore = new DatasetStore({ ...DEFAULT_TRAINING_WORKER_OPTIONS, data });
  const list: DatasetSummary[] = [];
  for (const id of await store.list()) {
    const m = await store.manifest(id);
    list.push({ id, source: m.source, classes: m.classes, counts: m.counts, images: m.images.length, skipped: [], explicitTest: m.explicitTest });
  }
  return list;
}

/** Adds the training commands to the CLI. */
export function registerTrainingCommands(program: Command, worker: Command): void {
  const trainingCommand = worker
    .command('training')
    .description('train models: services train, train.run, datasets.*')
    .option('--connect <endpoint>', 'broker backend endpoint')
    .option('--broker <endpoint>', 'broker frontend endpoint, to fan a search out to every training worker (default: run it here)')
    .option('--data <dir>', 'data directory (datasets, run store)')
    .option('--store <url>', 'where experiments and runs are kept: sqlite:FOLDER or a postgres:// URL every training worker shares (default: runs.sqlite in --data)')
    .option('--models <dir>', 'model repository trained models are exported to')
    .option('--run-concurrency <n>', 'runs of one search in flight at once')
    .option('--run-capacity <n>', 'runs of any search this worker computes at once')
    .option('--capacity <n>', 'trainings orchestrated at once')
    .option('--smtp <url>', 'SMTP server for completion emails, e.g. smtp://host:587 or smtps://user:pass@host:465 (default: no email)')
    .option('--mail-from <address>', 'sender of completion emails (default: zerve@<host name>)')
    .option('--config <file>', 'JSON config file');
  addMetricsOptions(trainingCommand, true)
    .action(async (flags: Record<string, unknown>) => {
      const { TrainingWorker } = await import('../workers/training/training-worker.ts');
      let training: InstanceType<typeof TrainingWorker>;
      try {
        training = await TrainingWorker.open(resolveOptions(DEFAULT_TRAINING_WORKER_OPTIONS, flags));
      } catch (err) {
        return reportError(err);
      }
      const metrics = await serveMetrics(flags, [training.metrics.registry]);
      onShutdown(async () => {
        await Promise.all([training.close(), metrics?.close()]);
      });
      training.start();
    });

  const datasets = program.command('datasets').description('training datasets');
  datasets
    .command('add')
    .description('upload a zip, a tar.gz or a folder of class folders')
    .argument('<path>', 'archive or folder')
    .option('--name <name>', 'a name to train with instead of the id')
    .option('--idempotency-key <key>', 'a key of your choice: sent again with the same key, the training worker answers the first add (and it may be resent through another broker)')
    .option('--broker <endpoint>', 'broker frontend endpoint (default: ZERVE_BROKER)')
    .option('--timeout-ms <ms>', 'time to wait for the import', '600000')
    .option('--json', 'print the manifest summary as JSON')
    .action((path: string, flags: Record<string, unknown>) =>
      withClient(flags, async (client) => {
        const key = flags.idempotencyKey;
        if (key !== undefined && !isIdempotencyKey(key)) throw new ZerveError('BAD_REQUEST', '--idempotency-key must be 1 to 128 printable ASCII characters without spaces');
        const info = await lstat(path).catch((err: Error) => {
          throw new ZerveError('BAD_REQUEST', `cannot read ${path}: ${err.message}`);
        });
        const archive = info.isDirectory() ? await packFolder(path) : await readFile(path);
        const header = { ...(flags.name ? { name: String(flags.name) } : {}), ...(key === undefined ? {} : { key }), deadlineMs: Number(flags.timeoutMs) };
        // With a key the worker answers a resend with the first summary, so it may go through another broker.
        const summary = await client.requestJson<DatasetSummary>(DATASETS_ADD, [encodeJson(header), archive], { idempotent: key !== undefined });
        if (flags.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
        else {
          process.stdout.write(`dataset ${summary.id}${summary.name ? ` (${summary.name})` : ''}: ${summary.images} images, classes ${summary.classes.join(', ')}\n`);
          for (const s of summary.skipped) process.stdout.write(`  skipped ${s.path}: ${s.reason}${s.detail ? ` (${s.detail})` : ''}\n`);
        }
      }),
    );
  datasets
    .command('list')
    .description('datasets the training workers of every host hold (or one data folder holds, with --data)')
    .option('--broker <endpoint>', 'broker frontend endpoint (default: ZERVE_BROKER)')
    .option('--data <dir>', 'list this data folder instead of asking the cluster (offline)')
    .option('--timeout-ms <ms>', 'time to wait for each training worker', '10000')
    .option('--json', 'print JSON')
    .action((flags: Record<string, unknown>) =>
      withClient(flags, async (client) => {
        const list = flags.data !== undefined ? await localDatasets(String(flags.data)) : await clusterDatasets(client, client.options.timeoutMs);
        if (flags.json) process.stdout.write(JSON.stringify(list, null, 2) + '\n');
        else {
          const table = new Table({ head: ['id', 'name', 'source', 'images', 'classes'] });
          for (const d of list) table.push([d.id, d.name ?? '', d.source, d.images, d.classes.join(', ')]);
          process.stdout.write(table.toString() + '\n');
        }
      }),
    );

  program
    .command('train')
    .description('train a model through the cluster and serve it as classify.<name>')
    .requiredOption('--dataset <id>', 'dataset id or name, or mnist')
    .requiredOption('--name <model>', 'model name to export as')
    .addOption(new Option('--family <family>', 'model family (default: transfer for a photo dataset when a squeezenet model is served, else mlp)').choices(['mlp', 'transfer']))
    .option('--backbone <name>', 'transfer learning on embeddings of this repository model (e.g. squeezenet-fp32)')
    .addOption(new Option('--head <kind>', 'transfer head').choices(['linear', 'mlp']))
    .option('--param <key=value>', 'a fixed hyperparameter (repeatable)', collect)
    .option('--grid <key=v1,v2>', 'grid search over these values (repeatable)', collect)
    .option('--random <n>', 'random search: N samples', parseInteger)
    .option('--range <key=lo:hi>', 'random search range or choice list (repeatable)', collect)
    .option('--epochs <n>', 'most epochs per run', parseInteger)
    .option('--split <split>', 'holdout:0.2, kfold:5 or test (the dataset test/ folder)')
    .option('--seed <n>', 'seed', parseInteger)
    .option('--notify-webhook <url>', 'POST the outcome as JSON to this http(s) URL when the training ends')
    .option('--notify-email <address>', 'email the outcome to this address when the training ends (repeatable; the training worker needs --smtp)', collect)
    .option('--broker <endpoint>', 'broker frontend endpoint (default: ZERVE_BROKER)')
    .option('--json', 'print the result as JSON')
    .action((flags: TrainFlags) => {
      const view = new TrainingProgressView();
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      return withClient(flags, async (client) => {
        const grid = flags.grid ?? [];
        const ranges = flags.range ?? [];
        if (grid.length > 0 && (flags.random !== undefined || ranges.length > 0)) throw new ZerveError('BAD_REQUEST', 'use either --grid or --random with --range');
        const header: TrainHeader = {
          datasetId: flags.dataset,
          // No family: the worker picks transfer for a photo dataset when a backbone is served, else mlp.
          ...(flags.family ? { family: flags.family } : flags.backbone ? { family: 'transfer' as const } : {}),
          ...(flags.backbone ? { backbone: flags.backbone } : {}),
          ...(flags.head ? { head: flags.head } : {}),
          ...(flags.param ? { params: parseParams(flags.param) } : {}),
          ...(grid.length > 0 ? { search: { mode: 'grid', params: grid } } : {}),
          ...(flags.random !== undefined ? { search: { mode: 'random', params: ranges, samples: flags.random } } : {}),
          ...(flags.epochs !== undefined ? { epochs: flags.epochs } : {}),
          ...(flags.split ? { split: parseSplit(flags.split) } : {}),
          ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
          export: { name: flags.name },
          ...(flags.notifyWebhook || flags.notifyEmail
            ? { notify: { ...(flags.notifyWebhook ? { webhook: flags.notifyWebhook } : {}), ...(flags.notifyEmail ? { email: flags.notifyEmail } : {}) } }
            : {}),
        };
        let result: TrainResultMessage;
        try {
          result = await requestTraining(client, header, { signal: controller.signal, onProgress: (m) => view.update(m) });
        } finally {
          view.stop();
        }
        process.stdout.write(flags.json ? JSON.stringify(result) + '\n' : formatTrainResult(result));
      });
    });

  const runs = program.command('runs').description('tracked experiments and runs: from every training worker through the broker, from the shared store with --store, or from a run store with --data (offline)');
  /** With --store (or ZERVE_STORE) or --data: the store to read instead of asking the cluster. */
  const storeOf = (flags: Record<string, unknown>): string | undefined =>
    (flags.store as string | undefined) ?? process.env.ZERVE_STORE ?? (flags.data !== undefined ? `sqlite:${String(flags.data)}` : undefined);
  const openStore = async (flags: Record<string, unknown>): Promise<ExperimentStore> => {
    const { openExperimentStore } = await import('../shared/store/open-experiment-store.ts');
    return openExperimentStore(storeOf(flags)!, String(flags.data ?? '.'), logger, { readonly: true });
  };
  /** Runs `fn` with the cluster's run history, closing the client afterwards. */
  const withCluster = async <T>(flags: Record<string, unknown>, fn: (runs: ClusterRuns) => Promise<T>): Promise<T> => {
    const client = new ZerveClient(resolveOptions(DEFAULT_CLIENT_OPTIONS, flags));
    try {
      return await fn(new ClusterRuns(client, client.options.timeoutMs));
    } finally {
      await client.close();
    }
  };
  const clusterFlags = (command: Command) =>
    command
      .option('--data <dir>', 'read this run store instead of asking the cluster (offline)')
      .option('--store <url>', 'read the shared store (postgres://...) instead of asking the cluster (default: ZERVE_STORE)')
      .option('--broker <endpoint>', 'broker frontend endpoint (default: ZERVE_BROKER)')
      .option('--timeout-ms <ms>', 'time to wait for each training worker', '10000');
  clusterFlags(runs.command('list').description('runs, newest experiment first'))
    .option('--limit <n>', 'most runs', parseInteger, 50)
    .addOption(new Option('--format <format>', 'output').choices(['table', 'markdown', 'latex', 'json']).default('table'))
    .action(async (flags: Record<string, unknown>) => {
      try {
        const limit = Number(flags.limit);
        let list: RunRecord[];
        if (storeOf(flags) !== undefined) {
          const store = await openStore(flags);
          try {
            list = await Promise.all((await store.runs({ limit })).map(async (r) => (await store.run(r.id))!));
          } finally {
            await store.close();
          }
        } else {
          list = (await withCluster(flags, (cluster) => cluster.list(limit))).flatMap(experimentRuns).slice(0, limit);
        }
        process.stdout.write(flags.format === 'json' ? JSON.stringify(list.map(({ epochs: _, ...r }) => r), null, 2) + '\n' : runsTable(list, String(flags.format)));
      } catch (err) {
        reportError(err);
      }
    });
  clusterFlags(runs.command('show').description('one run (with its epochs) or one experiment (with its runs), as JSON'))
    .argument('<id>', 'run id (e1a2b3c4-1) or experiment id (e1a2b3c4)')
    .action(async (id: string, flags: Record<string, unknown>) => {
      try {
        let shown: unknown;
        if (storeOf(flags) !== undefined) {
          const store = await openStore(flags);
          try {
            const run = await store.run(id);
            const experiment = run ? undefined : await store.experiment(id);
            shown = run ?? (experiment ? { ...experiment, runs: await store.runs({ experimentId: id }) } : undefined);
          } finally {
            await store.close();
          }
          if (!shown) throw new ZerveError('UNKNOWN_RUN', `no run or experiment ${id}`);
        } else {
          shown = await withCluster(flags, (cluster) => cluster.get(id));
        }
        process.stdout.write(JSON.stringify(shown, null, 2) + '\n');
      } catch (err) {
        reportError(err);
      }
    });
  clusterFlags(runs.command('compare').description('runs side by side (an experiment id stands for all its runs)'))
    .argument('<ids...>', 'run or experiment ids')
    .addOption(new Option('--format <format>', 'output').choices(['table', 'markdown', 'latex', 'json']).default('table'))
    .action(async (ids: string[], flags: Record<string, unknown>) => {
      try {
        const list: RunRecord[] = [];
        if (storeOf(flags) !== undefined) {
          const store = await openStore(flags);
          try {
            for (const id of ids) {
              const run = await store.run(id);
              if (run) list.push(run);
              else if (await store.experiment(id)) {
                for (const r of await store.runs({ experimentId: id })) list.push((await store.run(r.id))!);
              } else throw new ZerveError('UNKNOWN_RUN', `no run or experiment ${id}`);
            }
          } finally {
            await store.close();
          }
        } else {
          await withCluster(flags, async (cluster) => {
            for (const found of await Promise.all(ids.map((id) => cluster.get(id)))) {
              if ('experimentId' in found) list.push(found);
              else list.push(...experimentRuns(found));
            }
          });
        }
        process.stdout.write(flags.format === 'json' ? JSON.stringify(list, null, 2) + '\n' : runsTable(list, String(flags.format)));
      } catch (err) {
        reportError(err);
      }
    });
}

/**
 * `zerve up` on an empty repository: trains `digits` from the built-in mnist as a job through the
 * cluster, with progress on stderr; inference workers then serve it by hot reload.
 */
export async function trainDefaultDigits(broker: string, curve: Partial<CurveOptions> = {}): Promise<TrainResultMessage | undefined> {
  const client = new ZerveClient({ ...curve, broker });
  const view = new TrainingProgressView();
  try {
    // A durable job: it shows on the web page's runs and survives this command's end.
    // Keyed: a `zerve up` restarted while digits trains follows that job instead of queuing another.
    const ticket = await submitJob(client, trainingJobFrames(DIGITS_REQUEST, { key: 'zerve-up:digits' }));
    process.stderr.write(`zerve: empty model repository: training the built-in \`digits\` model from mnist as the first job (${ticket.id})\n`);
    const status = await watchJob(client, ticket.id, { onProgress: (p) => view.update(p.data as TrainProgressMessage) });
    const result = jobResult<TrainResultMessage>(status);
    view.stop();
    process.stderr.write(formatTrainResult(result));
    return result;
  } catch (err) {
    view.stop();
    const error = ZerveError.from(err);
    process.stderr.write(`zerve: training digits failed: ${error.code}: ${error.message}\n`);
    return undefined;
  } finally {
    await client.close();
  }
}
