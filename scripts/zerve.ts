/**
 * The `zerve` command line: `npx zerve --help`. Options resolve from flags, `ZERVE_*` environment
 * variables and a `--config` JSON file with the same names (see shared/config.ts).
 */
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { resolve, basename } from 'node:path';
import { Command } from 'commander';
import Table from 'cli-table3';
// Each command imports what it runs when it runs (await import): a process that runs the broker or one
// worker kind then loads only that, not onnxruntime, sharp, express and the trainer each time.
import type { Broker } from '../broker/broker.ts';
import {
  DEFAULT_BROKER_OPTIONS,
  DEFAULT_INFERENCE_OPTIONS,
  DEFAULT_MODEL_SYNC_OPTIONS,
  DEFAULT_NOTIFIER_OPTIONS,
  DEFAULT_WORKER_CONNECTION_OPTIONS,
  resolveOptions,
} from '../shared/config.ts';
import { ZerveError } from '../shared/errors.ts';
import { logger } from '../shared/logger.ts';
import type { ClassifyReply } from '../shared/messages.ts';
import { onShutdown, parseInteger, reportError, withClient } from './cli-support.ts';
import { addMetricsOptions, serveMetrics } from './metrics-flags.ts';
import { ProcessSupervisor } from './process-supervisor.ts';
import { registerModelCommands } from './model-commands.ts';
import { formatStatus } from './status-view.ts';
import { registerTrainingCommands, trainDefaultDigits } from './training-commands.ts';
import { addBrokerCurveFlags, addConnectCurveFlags } from './curve-flags.ts';
import { generateKeyFiles } from '../shared/curve-keys.ts';
import type { SecurityInfo } from '../shared/messages.ts';
import { MMI_SECURITY } from '../shared/protocol.ts';
import { inferenceSizing } from './inference-sizing.ts';

const log = logger.child({ component: 'cli' });
/** `zerve classify` keeps this many files in flight: enough to keep a cluster busy, few enough to bound memory. */
const CLASSIFY_FILES_IN_FLIGHT = 64;
/** The provided sample images beside the checkout, offered on the page when present. */
const DEFAULT_SAMPLES = resolve('..', 'shared', 'fixtures', 'images');
/** `zerve up`'s inference workers and threads when not given (inference-sizing.ts). */
const DEFAULT_SIZING = inferenceSizing();
const program = new Command('zerve').description('Zerve: a model-serving cluster on ZeroMQ').showHelpAfterError();

const up = program
  .command('up')
  .description('run a whole cluster here: broker, inference and training worker processes, jobs service and web app')
  .option('--models <dir>', 'model repository', DEFAULT_INFERENCE_OPTIONS.models)
  .option('--frontend <endpoint>', 'endpoint clients connect to')
  .option('--backend <endpoint>', 'endpoint workers connect to')
  .option('--workers <n>', `inference worker processes (default: sized to the cores, ${DEFAULT_SIZING.workers} here)`, parseInteger)
  .option('--training-workers <n>', 'training worker processes (services train, train.run, datasets.*)', parseInteger, 1)
  .option('--capacity <n>', 'requests each inference worker takes at once', parseInteger)
  .option('--threads <n>', `onnxruntime threads per inference worker (default: sized to the cores, ${DEFAULT_SIZING.threads} here)`, parseInteger)
  .option('--http <port>', 'web app port')
  .option('--data <dir>', "folder of the job store and of the training workers' datasets and run store")
  .option('--samples <dir>', 'sample images offered on the page')
  .option('--smtp <url>', "training workers' SMTP server for completion emails, e.g. smtp://host:587 (default: no email)")
  .option('--mail-from <address>', 'sender of completion emails (default: zerve@<host name>)')
  .option('--metrics-port <port>', "serve the broker's /metrics (the whole cluster) on this port (default: off)")
  .option('--config <file>', 'JSON config file')
  .action(async (flags: Record<string, unknown>) => {
    const brokerOptions = resolveOptions(DEFAULT_BROKER_OPTIONS, flags);
    const { smtp, mailFrom } = resolveOptions(DEFAULT_NOTIFIER_OPTIONS, flags);
    // Local processes authenticate with the broker's own key pair (always admitted); its .key holds the public key too.
    const curveKey = brokerOptions.curveKey === '' ? '' : resolve(brokerOptions.curveKey);
    const curve = { curveKey, brokerKey: curveKey, clientAuth: brokerOptions.clientAuth };
    const curveArgs = curveKey === '' ? [] : ['--curve-key', curveKey, '--broker-key', curveKey, '--client-auth', curve.clientAuth];
    const models = resolve(String(flags.models));
    await mkdir(models, { recursive: true });
    const { Broker } = await import('../broker/broker.ts');
    const { startJobsWorker } = await import('../workers/jobs/jobs-worker.ts');
    const { startWebApp } = await import('../webapp/web-app.ts');
    let broker: Broker;
    try {
      broker = new Broker(brokerOptions);
    } catch (err) {
      return reportError(err);
    }
    await broker.start();
    const metrics = await serveMetrics(flags, [broker.metrics.registry]);
    // Through the environment, not argv: an smtp URL may carry a password, and argv shows in `ps`.
    const supervisor = new ProcessSupervisor(log, { ...process.env, ...(smtp !== '' ? { ZERVE_SMTP: smtp } : {}), ...(mailFrom !== '' ? { ZERVE_MAIL_FROM: mailFrom } : {}) });
    // Sized to the cores unless given: one worker with one thread left most of a bigger machine idle.
    const workers = flags.workers === undefined ? DEFAULT_SIZING.workers : Number(flags.workers);
    const threads = flags.threads === undefined ? DEFAULT_SIZING.threads : Number(flags.threads);
    let registered = 0;
    broker.on('worker-ready', (info: { kind: string }) => {
      if (info.kind !== 'inference') return;
      registered++;
      if (registered <= workers) process.stderr.write(`workers ready: ${registered}/${workers}\n`);
    });
    for (let i = 0; i < workers; i++) {
      const args = ['worker', 'inference', '--connect', broker.backendEndpoint, '--broker', broker.frontendEndpoint, '--models', models, ...curveArgs];
      if (flags.capacity !== undefined) args.push('--capacity', String(flags.capacity));
      args.push('--threads', String(threads));
      supervisor.add(`inference-${i + 1}`, args);
    }
    const trainingWorkers = Number(flags.trainingWorkers);
    for (let i = 0; i < trainingWorkers; i++) {
      // --broker lets each worker fan a search's runs out to every training worker.
      const args = ['worker', 'training', '--connect', broker.backendEndpoint, '--broker', broker.frontendEndpoint, '--models', models, ...curveArgs];
      if (flags.data !== undefined) args.push('--data', resolve(String(flags.data)));
      supervisor.add(`training-${i + 1}`, args);
    }
    const jobs = startJobsWorker({ ...flags, ...curve, connect: broker.backendEndpoint, broker: broker.frontendEndpoint });
    const samples = flags.samples ?? (existsSync(DEFAULT_SAMPLES) ? DEFAULT_SAMPLES : undefined);
    // The page's model uploads are offered on the worker socket, the one that takes workers under CURVE.
    const web = await startWebApp({ ...flags, ...curve, broker: broker.frontendEndpoint, connect: broker.backendEndpoint, ...(samples ? { samples } : {}) });
    onShutdown(async () => {
      await web.close();
      await jobs.close();
      await supervisor.close();
      await metrics?.close();
      await broker.close();
    });
    process.stderr.write(`zerve: web app at ${web.url}\n`);
    // Hidden entries (`.incoming`, where transfers are staged) are no models.
    const entries = (await readdir(models).catch(() => [] as string[])).filter((e) => !e.startsWith('.'));
    process.stderr.write(`zerve: broker ${broker.frontendEndpoint} (workers on ${broker.backendEndpoint}), ${workers} inference worker(s) x ${threads} onnxruntime thread(s), models in ${models}\n`);
    if (entries.length === 0 && trainingWorkers > 0) {
      // The built-in default: a fresh machine gets a served model (classify.digits) with no network.
      void trainDefaultDigits(broker.frontendEndpoint, curve);
    } else if (entries.length === 0) {
      process.stderr.write(
        `zerve: no models in ${models} yet. Add one and it is served without a restart, for example:\n` +
          `  npx zerve models add squeezenet ../shared/fixtures/models/squeezenet/model.onnx --labels ../shared/fixtures/models/squeezenet/labels.txt --channels bgr --models ${models}\n`,
      );
    }
  });

addBrokerCurveFlags(up);

const brokerCommand = program
  .command('broker')
  .description('run the broker alone')
  .option('--frontend <endpoint>', 'endpoint clients connect to')
  .option('--backend <endpoint>', 'endpoint workers connect to')
  .option('--heartbeat-interval-ms <ms>', 'heartbeat interval')
  .option('--default-deadline-ms <ms>', 'deadline of requests that set none')
  .option('--max-queued-per-service <n>', 'queue bound per service')
  .option('--max-queued-bytes-per-service <bytes>', 'queued body bytes per service')
  .option('--max-deadline-ms <prefix=ms,...>', 'longest deadline by service-name prefix')
  .option('--config <file>', 'JSON config file');
addMetricsOptions(brokerCommand).action(async (flags: Record<string, unknown>) => {
  const { Broker } = await import('../broker/broker.ts');
  let broker: Broker;
  try {
    broker = new Broker(resolveOptions(DEFAULT_BROKER_OPTIONS, flags));
  } catch (err) {
    return reportError(err); // e.g. secure by default: says why it will not start
  }
  await broker.start();
  const metrics = await serveMetrics(flags, [broker.metrics.registry]);
  onShutdown(async () => {
    await metrics?.close();
    await broker.close();
  });
});
addBrokerCurveFlags(brokerCommand);

program
  .command('keys')
  .description('CURVE keys')
  .command('generate')
  .description('write a CURVE key pair: NAME.key (secret, mode 0600) and NAME.pub (public key, to copy to the hosts that trust it)')
  .argument('<name>', 'key name, e.g. the host name or broker')
  .option('--dir <dir>', 'folder to write the files to', '.')
  .action(async (name: string, flags: { dir: string }) => {
    try {
      const { keyFile, pubFile, publicKey } = await generateKeyFiles(name, resolve(flags.dir));
      process.stdout.write(`wrote ${keyFile} (secret, mode 0600) and ${pubFile}\npublic key: ${publicKey}\n`);
    } catch (err) {
      reportError(err);
    }
  });

const worker = program.command('worker').description('run a worker process');

const inferenceCommand = worker
  .command('inference')
  .description('serve the models of a repository')
  .option('--connect <endpoint>', 'broker backend endpoint')
  .option('--broker <endpoint>', "broker frontend, for the cluster's models (default: the --connect endpoint)")
  .option('--models <dir>', 'model repository (its own; the cluster\'s models are fetched into it)')
  .option('--serve <names>', 'serve and fetch only these models, comma-separated (default: all)')
  .option('--capacity <n>', 'requests taken at once')
  .option('--threads <n>', 'onnxruntime intra-op threads')
  .option('--result-cache-bytes <n>', 'bytes of answers kept in the result cache; 0 turns it off')
  .option('--config <file>', 'JSON config file');
addMetricsOptions(inferenceCommand, true).action(async (flags: Record<string, unknown>) => {
  const inference = resolveOptions(DEFAULT_INFERENCE_OPTIONS, flags);
  const connection = resolveOptions(DEFAULT_WORKER_CONNECTION_OPTIONS, flags);
  const sync = resolveOptions(DEFAULT_MODEL_SYNC_OPTIONS, flags);
  const { InferenceWorker } = await import('../workers/inference/inference-worker.ts');
  const worker = new InferenceWorker({ ...inference, ...sync, ...connection, kind: 'inference' });
  const metrics = await serveMetrics(flags, [worker.metrics.registry]);
  onShutdown(async () => {
    await worker.close();
    await metrics?.close();
  });
  await worker.start();
});

worker
  .command('echo')
  .description('answer the echo service with the request body (benchmarks, tests)')
  .option('--connect <endpoint>', 'broker backend endpoint')
  .option('--capacity <n>', 'requests taken at once')
  .option('--config <file>', 'JSON config file')
  .action(async (flags: Record<string, unknown>) => {
    const { createEchoWorker } = await import('../workers/echo/echo-worker.ts');
    const echo = createEchoWorker(resolveOptions(DEFAULT_WORKER_CONNECTION_OPTIONS, flags));
    echo.start();
    onShutdown(() => echo.close());
  });

const jobsCommand = worker
  .command('jobs')
  .description('run the durable jobs service (job tickets in SQLite)')
  .option('--connect <endpoint>', 'broker backend endpoint')
  .option('--broker <endpoint>', 'broker frontend endpoint jobs are dispatched through')
  .option('--data <dir>', 'folder of the job store')
  .option('--concurrency <n>', 'jobs dispatched at once')
  .option('--config <file>', 'JSON config file');
addMetricsOptions(jobsCommand, true).action(async (flags: Record<string, unknown>) => {
  const { startJobsWorker } = await import('../workers/jobs/jobs-worker.ts');
  const jobs = startJobsWorker(flags);
  const metrics = await serveMetrics(flags, [jobs.metrics.registry]);
  onShutdown(async () => {
    await jobs.close();
    await metrics?.close();
  });
});

program
  .command('web')
  .description('run the web app (page and HTTP API) against a broker')
  .option('--broker <endpoint>', 'broker frontend endpoint')
  .option('--connect <endpoint>', "broker worker endpoint a model uploaded on the page is offered on until an inference worker takes it (default: the --broker endpoint; under CURVE: the broker's worker socket)")
  .option('--http <port>', 'port')
  .option('--host <host>', 'address to listen on')
  .option('--samples <dir>', 'sample images offered on the page')
  .option('--config <file>', 'JSON config file')
  .action(async (flags: Record<string, unknown>) => {
    const { startWebApp } = await import('../webapp/web-app.ts');
    const web = await startWebApp(flags);
    process.stderr.write(`zerve: web app at ${web.url}\n`);
    onShutdown(() => web.close());
  });

program
  .command('classify')
  .description('classify image files')
  .argument('<files...>', 'image files')
  .requiredOption('--model <name>', 'model name')
  .option('--topk <k>', 'predictions per image', parseInteger)
  .option('--version <version>', 'model version (default: latest)')
  .option('--broker <endpoint>', 'broker frontend endpoint (default: ZERVE_BROKER)')
  .option('--timeout-ms <ms>', 'time to wait for each reply')
  .option('--retries <n>', 'retries after a timeout')
  .option('--json', 'print JSON lines')
  .action(async (files: string[], flags: Record<string, unknown>) => {
    await withClient(flags, async (client) => {
      const header = { ...(flags.topk ? { topk: flags.topk as number } : {}), ...(flags.version ? { version: String(flags.version) } : {}) };
      const table = new Table({ head: ['file', '#', 'label', 'probability', 'ms'] });
      type Outcome = { reply: ClassifyReply } | { error: ZerveError };
      const print = (file: string, outcome: Outcome): void => {
        if (flags.json) {
          process.stdout.write(JSON.stringify({ file, ...('reply' in outcome ? outcome.reply : outcome.error.toJSON()) }) + '\n');
        } else if ('reply' in outcome) {
          const { reply } = outcome;
          reply.predictions.forEach((p, i) =>
            table.push([i === 0 ? basename(file) : '', i + 1, p.label, p.probability.toFixed(4), i === 0 ? reply.timings.totalMs?.toFixed(1) ?? '' : '']),
          );
        } else {
          table.push([basename(file), '-', `${outcome.error.code}: ${outcome.error.message}`, '', '']);
        }
      };
      // Requests overlap on the client's one socket, but results print in the order the files were given;
      // at most CLASSIFY_FILES_IN_FLIGHT files are read into memory at once, however many are named.
      const outcomes: Array<Outcome | undefined> = [];
      let printed = 0;
      let done = 0;
      let failed = 0;
      let next = 0;
      const progress = files.length > 1 && process.stderr.isTTY;
      const classifyNext = async (): Promise<void> => {
        while (next < files.length) {
          const index = next++;
          const file = files[index]!;
          try {
            const image = await readFile(file).catch((err: Error) => {
              throw new ZerveError('BAD_REQUEST', `cannot read ${file}: ${err.message}`);
            });
            outcomes[index] = { reply: await client.classify(String(flags.model), image, header) };
          } catch (err) {
            outcomes[index] = { error: ZerveError.from(err) };
            failed++;
          }
          done++;
          if (progress) process.stderr.write(`\rclassified ${done}/${files.length}`);
          for (; printed < files.length && outcomes[printed]; printed++) {
            print(files[printed]!, outcomes[printed]!);
            outcomes[printed] = undefined;
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(CLASSIFY_FILES_IN_FLIGHT, files.length) }, classifyNext));
      if (progress) process.stderr.write('\n');
      if (!flags.json) process.stdout.write(table.toString() + '\n');
      if (failed > 0) process.exitCode = 1;
    });
  });

program
  .command('status')
  .description('services, workers and queue depths')
  .option('--broker <endpoint>', 'broker frontend endpoint (default: ZERVE_BROKER)')
  .option('--timeout-ms <ms>', 'time to wait for the broker', '3000')
  .option('--json', 'print JSON')
  .action(async (flags: Record<string, unknown>) => {
    await withClient(flags, async (client) => {
      const [services, workers, security] = await Promise.all([client.services(), client.workers(), client.requestJson<SecurityInfo>(MMI_SECURITY, [])]);
      if (flags.json) {
        process.stdout.write(JSON.stringify({ services, workers, security }, null, 2) + '\n');
        return;
      }
      if (security.insecure) process.stdout.write('WARNING: the broker runs with --insecure: a worker socket without CURVE is open to anyone who reaches it\n');
      process.stdout.write(formatStatus(services, workers));
    });
  });

registerModelCommands(program);
registerTrainingCommands(program, worker);
addConnectCurveFlags(program);

await program.parseAsync(process.argv);
