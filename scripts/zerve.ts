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
  DEFAULT_CLIENT_OPTIONS,
  DEFAULT_INFERENCE_OPTIONS,
  DEFAULT_MODEL_SYNC_OPTIONS,
  DEFAULT_NOTIFIER_OPTIONS,
  DEFAULT_WORKER_CONNECTION_OPTIONS,
  resolveOptions,
} from '../shared/config.ts';
import { ZerveError } from '../shared/errors.ts';
import { pairBrokerKeys, parseBrokerList, siblingEndpoint } from '../shared/broker-list.ts';
import { ZerveClient } from '../shared/client.ts';
import { logger } from '../shared/logger.ts';
import type { ClassifyReply } from '../shared/messages.ts';
import { onShutdown, parseInteger, reportError, withClient } from './cli-support.ts';
import { addMetricsOptions, serveMetrics } from './metrics-flags.ts';
import { ProcessSupervisor } from './process-supervisor.ts';
import { startAutoscaling, type ClusterAutoscaling } from './cluster-autoscaling.ts';
import { registerModelCommands } from './model-commands.ts';
import { registerAuthCommands } from './auth-commands.ts';
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
  .option('--brokers <n>', 'brokers: this process, plus n-1 broker child processes on the next ports (frontend and backend + 2 each); every component connects to all (docs/brokers.md)', parseInteger, 1)
  .option('--training-workers <n>', 'training worker processes (services train, train.run, datasets.*)', parseInteger, 1)
  .option('--capacity <n>', 'requests each inference worker takes at once', parseInteger)
  .option('--threads <n>', `onnxruntime threads per inference worker (default: sized to the cores, ${DEFAULT_SIZING.threads} here)`, parseInteger)
  .option('--http <port>', 'web app port')
  .option('--data <dir>', "folder of the job store and of the training workers' datasets and run store")
  .option('--samples <dir>', 'sample images offered on the page')
  .option('--smtp <url>', "training workers' SMTP server for completion emails, e.g. smtp://host:587 (default: no email)")
  .option('--mail-from <address>', 'sender of completion emails (default: zerve@<host name>)')
  .option('--metrics-port <port>', "serve the broker's /metrics (the whole cluster) on this port (default: off)")
  .option('--auth <mode>', 'web app: off (default on loopback), tokens or oidc (docs/auth.md); users and tokens in --data')
  .option('--autoscale <min:max>', 'grow and shrink the inference worker processes between MIN and MAX with the load (replaces --workers)')
  .option('--autoscale-training <min:max>', 'the same for training worker processes (replaces --training-workers)')
  .option('--target-per-capacity <n>', 'autoscaling: wanted in-flight plus queued requests per unit of worker capacity (default 2)')
  .option('--upscale-delay-ms <ms>', 'autoscaling: the load stays above target this long before growing (default 5000)')
  .option('--downscale-delay-ms <ms>', 'autoscaling: the load stays below target this long before shrinking (default 120000)')
  .option('--look-back-ms <ms>', 'autoscaling: the load is the median over this past span (default 10000)')
  .option('--tolerance <fraction>', 'autoscaling: band around the target where nothing changes (default 0.1)')
  .option('--autoscale-interval-ms <ms>', 'autoscaling: time between reading the load and deciding (default 1000)')
  .option('--cluster-poll-ms <ms>', 'how often the /cluster page polls the broker (default 1000)')
  .option('--config <file>', 'JSON config file')
  .action(async (flags: Record<string, unknown>) => {
    const brokerCount = Number(flags.brokers);
    if (!(brokerCount >= 1)) return reportError(new ZerveError('BAD_CONFIG', `--brokers must be at least 1, got ${brokerCount}`));
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
    // The other brokers are child processes, so that one can be killed (and is restarted) while this one serves.
    const frontends = [broker.frontendEndpoint];
    const backends = [broker.backendEndpoint];
    for (let i = 1; i < brokerCount; i++) {
      frontends.push(siblingEndpoint(broker.frontendEndpoint, i));
      backends.push(siblingEndpoint(broker.backendEndpoint, i));
      const args = ['broker', '--frontend', frontends[i]!, '--backend', backends[i]!, '--client-auth', brokerOptions.clientAuth];
      if (curveKey !== '') args.push('--curve-key', curveKey);
      if (brokerOptions.authorizedWorkers !== '') args.push('--authorized-workers', resolve(brokerOptions.authorizedWorkers));
      if (brokerOptions.authorizedClients !== '') args.push('--authorized-clients', resolve(brokerOptions.authorizedClients));
      if (brokerOptions.clientUsers !== '') args.push('--client-users', resolve(brokerOptions.clientUsers));
      if (brokerOptions.insecure) args.push('--insecure');
      supervisor.add(`broker-${i + 1}`, args);
    }
    const frontendList = frontends.join(',');
    const backendList = backends.join(',');
    // Sized to the cores unless given: one worker with one thread left most of a bigger machine idle.
    let workers = flags.workers === undefined ? DEFAULT_SIZING.workers : Number(flags.workers);
    const threads = flags.threads === undefined ? DEFAULT_SIZING.threads : Number(flags.threads);
    let registered = 0;
    broker.on('worker-ready', (info: { kind: string }) => {
      if (info.kind !== 'inference') return;
      registered++;
      if (registered <= workers) process.stderr.write(`workers ready: ${registered}/${workers}\n`);
    });
    const inferenceArgs = ['worker', 'inference', '--connect', backendList, '--broker', frontendList, '--models', models, ...curveArgs];
    if (flags.capacity !== undefined) inferenceArgs.push('--capacity', String(flags.capacity));
    inferenceArgs.push('--threads', String(threads));
    // --broker lets each worker fan a search's runs out to every training worker.
    const trainingArgs = ['worker', 'training', '--connect', backendList, '--broker', frontendList, '--models', models, ...curveArgs];
    if (flags.data !== undefined) trainingArgs.push('--data', resolve(String(flags.data)));
    let scaling: ClusterAutoscaling;
    try {
      // The load is read from this process's broker: every worker registers on it.
      scaling = startAutoscaling(flags, { supervisor, frontend: broker.frontendEndpoint, curve, inference: inferenceArgs, training: trainingArgs });
    } catch (err) {
      await supervisor.close();
      await broker.close();
      return reportError(err);
    }
    if (scaling.scales('inference')) workers = scaling.min('inference');
    if (!scaling.scales('inference')) for (let i = 0; i < workers; i++) supervisor.add(`inference-${i + 1}`, inferenceArgs);
    const trainingWorkers = scaling.scales('training') ? scaling.min('training') : Number(flags.trainingWorkers);
    if (!scaling.scales('training')) for (let i = 0; i < trainingWorkers; i++) supervisor.add(`training-${i + 1}`, trainingArgs);
    let jobs: Awaited<ReturnType<typeof startJobsWorker>>;
    try {
      jobs = await startJobsWorker({ ...flags, ...curve, connect: backendList, broker: frontendList });
    } catch (err) {
      // A store that cannot be opened (wrong URL, password, server down) stops `up` with its message.
      await scaling.close();
      await supervisor.close();
      await metrics?.close();
      await broker.close();
      return reportError(err);
    }
    const samples = flags.samples ?? (existsSync(DEFAULT_SAMPLES) ? DEFAULT_SAMPLES : undefined);
    // The page's model uploads are offered on the worker socket, the one that takes workers under CURVE.
    const web = await startWebApp({ ...flags, ...curve, broker: frontendList, connect: backendList, ...(samples ? { samples } : {}) });
    // The broker runs in this process: the web app's /metrics carries the cluster's series too.
    web.metrics.include(broker.metrics.registry);
    web.metrics.include(scaling.metrics.registry);
    web.cluster.showAutoscale(() => scaling.status());
    onShutdown(async () => {
      await scaling.close();
      await web.close();
      await jobs.close();
      await supervisor.close();
      await metrics?.close();
      await broker.close();
    });
    process.stderr.write(`zerve: web app at ${web.url}\n`);
    // Hidden entries (`.incoming`, where transfers are staged) are no models.
    const entries = (await readdir(models).catch(() => [] as string[])).filter((e) => !e.startsWith('.'));
    process.stderr.write(`zerve: broker${brokerCount > 1 ? 's' : ''} ${frontendList} (workers on ${backendList}), ${workers} inference worker(s) x ${threads} onnxruntime thread(s), models in ${models}\n`);
    if (entries.length === 0 && trainingWorkers > 0) {
      // The built-in default: a fresh machine gets a served model (classify.digits) with no network.
      void trainDefaultDigits(frontendList, curve);
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
    // Its own kind in mmi.workers: the resolved options carry the generic default.
    const echo = createEchoWorker({ ...resolveOptions(DEFAULT_WORKER_CONNECTION_OPTIONS, flags), kind: 'echo' });
    echo.start();
    onShutdown(() => echo.close());
  });

const jobsCommand = worker
  .command('jobs')
  .description('run the durable jobs service (job tickets in SQLite)')
  .option('--connect <endpoint>', 'broker backend endpoint')
  .option('--broker <endpoint>', 'broker frontend endpoint jobs are dispatched through')
  .option('--data <dir>', 'folder of the job store')
  .option('--store <url>', "where jobs are kept: sqlite:FOLDER or a postgres:// URL shared by several jobs services (default: jobs.sqlite in --data)")
  .option('--lease-ms <ms>', 'lease of a running job; another jobs service takes it over when it runs out')
  .option('--concurrency <n>', 'jobs dispatched at once')
  .option('--config <file>', 'JSON config file');
addMetricsOptions(jobsCommand, true).action(async (flags: Record<string, unknown>) => {
  const { startJobsWorker } = await import('../workers/jobs/jobs-worker.ts');
  let jobs: Awaited<ReturnType<typeof startJobsWorker>>;
  try {
    jobs = await startJobsWorker(flags);
  } catch (err) {
    return reportError(err);
  }
  const metrics = await serveMetrics(flags, [jobs.metrics.registry]);
  onShutdown(async () => {
    await jobs.close();
    await metrics?.close();
  });
});

program
  .command('web')
  .description('run the web app (page and HTTP API) against a broker')
  .option('--store <url>', 'where users and tokens are kept (sqlite:FOLDER or a postgres:// URL every replica shares; default: auth.sqlite in --data); a postgres:// store is also read for run history')
  .option('--broker <endpoint>', 'broker frontend endpoint')
  .option('--connect <endpoint>', "broker worker endpoint a model uploaded on the page is offered on until an inference worker takes it (default: the --broker endpoint; under CURVE: the broker's worker socket)")
  .option('--http <port>', 'port')
  .option('--host <host>', 'address to listen on')
  .option('--samples <dir>', 'sample images offered on the page')
  .option('--auth <mode>', 'off (default), tokens (bearer tokens of the auth store in --data) or oidc (tokens, and login through --oidc-issuer); docs/auth.md')
  .option('--data <dir>', 'data directory of the auth store (default: ./data)')
  .option('--metrics-auth <mode>', 'open (default) or token: /metrics asks for a token with the metrics scope')
  .option('--oidc-issuer <url>', 'auth oidc: the OpenID provider (client secret in ZERVE_OIDC_CLIENT_SECRET)')
  .option('--oidc-client-id <id>', "auth oidc: this web app's client id at the provider")
  .option('--oidc-admins <groups>', 'auth oidc: groups or @domains whose users are admins, comma-separated')
  .option('--oidc-members <groups>', 'auth oidc: groups or @domains whose users are members (others: viewers)')
  .option('--cluster-poll-ms <ms>', 'how often the /cluster page polls the broker (default 1000)')
  .option('--config <file>', 'JSON config file')
  .action(async (flags: Record<string, unknown>) => {
    const { startWebApp } = await import('../webapp/web-app.ts');
    let web: Awaited<ReturnType<typeof startWebApp>>;
    try {
      web = await startWebApp(flags);
    } catch (err) {
      return reportError(err); // e.g. secure by default: says why it will not start
    }
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
  .description('services, workers and queue depths, of each broker when given several')
  .option('--broker <endpoint>', 'broker frontend endpoint (default: ZERVE_BROKER)')
  .option('--timeout-ms <ms>', 'time to wait for each broker', '3000')
  .option('--json', 'print JSON')
  .action(async (flags: Record<string, unknown>) => {
    const options = resolveOptions(DEFAULT_CLIENT_OPTIONS, flags);
    let endpoints: string[];
    try {
      endpoints = parseBrokerList(options.broker, 'broker');
    } catch (err) {
      return reportError(err);
    }
    const ask = (client: ZerveClient) => Promise.all([client.services(), client.workers(), client.requestJson<SecurityInfo>(MMI_SECURITY, [])]);
    if (endpoints.length === 1) {
      await withClient(flags, async (client) => {
        const [services, workers, security] = await ask(client);
        if (flags.json) {
          process.stdout.write(JSON.stringify({ services, workers, security }, null, 2) + '\n');
          return;
        }
        if (security.insecure) process.stdout.write('WARNING: the broker runs with --insecure: a worker socket without CURVE is open to anyone who reaches it\n');
        process.stdout.write(formatStatus(services, workers));
      });
      return;
    }
    // Each broker apart: a worker registers on every broker, so summing them would count it twice.
    const keys = pairBrokerKeys(options.brokerKey, endpoints.length);
    const brokers = await Promise.all(
      endpoints.map(async (endpoint, i) => {
        const client = new ZerveClient({ ...options, broker: endpoint, brokerKey: keys[i]! });
        try {
          const [services, workers, security] = await ask(client);
          return { endpoint, services, workers, security, error: undefined };
        } catch (err) {
          return { endpoint, error: ZerveError.from(err).toJSON().error };
        } finally {
          await client.close();
        }
      }),
    );
    if (flags.json) {
      process.stdout.write(JSON.stringify({ brokers }, null, 2) + '\n');
    } else {
      for (const b of brokers) {
        if (b.error !== undefined) {
          process.stdout.write(`broker ${b.endpoint}: ${b.error.code}: ${b.error.message}\n\n`);
          continue;
        }
        process.stdout.write(`broker ${b.endpoint}: ${b.workers.length} worker connection(s)\n`);
        if (b.security.insecure) process.stdout.write('WARNING: this broker runs with --insecure: a worker socket without CURVE is open to anyone who reaches it\n');
        process.stdout.write(formatStatus(b.services, b.workers) + '\n');
      }
    }
    if (brokers.every((b) => b.error)) process.exitCode = 1;
  });

registerModelCommands(program);
registerAuthCommands(program);
registerTrainingCommands(program, worker);
addConnectCurveFlags(program);

await program.parseAsync(process.argv);
