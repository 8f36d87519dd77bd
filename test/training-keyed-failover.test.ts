import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { JOBS_STATUS, JOBS_SUBMIT, type JobStatus, type JobTicket } from '../shared/jobs.ts';
import { logger } from '../shared/logger.ts';
import { decodeReply, encodeJson, type WorkerInfo } from '../shared/messages.ts';
import { RUNS_LIST, TRAIN_SERVICE, trainingJobFrames, type ExperimentSummary, type TrainHeader, type TrainProgressMessage, type TrainResultMessage } from '../shared/training.ts';
import { TrainingWorker } from '../workers/training/training-worker.ts';
import { eventually } from './helpers/eventually.ts';
import { CliProcess, nextWorker, startBroker, tempDir, TEST_HEARTBEAT_MS } from './helpers/cluster.ts';

if (process.env.ZERVE_LOG_LEVEL === undefined) logger.level = 'silent';

/** The cheapest training that exports a model: no hidden layer, built-in digits. */
const QUICK: TrainHeader = { datasetId: 'mnist', family: 'mlp', params: { hidden: 'none' }, epochs: 1, seed: 1 };

/** Sends `train` and collects its PARTIALs and its FINAL. */
async function train(client: ZerveClient, header: TrainHeader): Promise<{ progress: TrainProgressMessage[]; result: TrainResultMessage }> {
  const progress: TrainProgressMessage[] = [];
  for await (const chunk of client.stream(TRAIN_SERVICE, [encodeJson({ deadlineMs: 600_000, ...header })], { timeoutMs: 60_000 })) {
    if (chunk.final) return { progress, result: decodeReply<TrainResultMessage>(chunk.body[0]) };
    progress.push(decodeReply<TrainProgressMessage>(chunk.body[0]));
  }
  throw new Error('train ended without a FINAL');
}

/** The version folders of `name` in a models folder. */
async function versionsOf(models: string, name: string): Promise<string[]> {
  return (await readdir(join(models, name), { withFileTypes: true })).filter((e) => e.isDirectory() && /^\d+$/.test(e.name)).map((e) => e.name);
}

describe('keyed training', function () {
  this.timeout(60_000);
  let dir: { path: string; remove: () => Promise<void> };
  let broker: Broker;
  let worker: TrainingWorker;
  let client: ZerveClient;

  beforeEach(async () => {
    dir = await tempDir('zerve-keyed-train-');
    broker = await startBroker();
    const registered = nextWorker(broker, (w) => w.services.includes(TRAIN_SERVICE));
    worker = new TrainingWorker({ connect: broker.backendEndpoint, data: join(dir.path, 'training'), models: join(dir.path, 'models'), heartbeatIntervalMs: TEST_HEARTBEAT_MS });
    worker.start();
    await registered;
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 60_000 });
  });

  afterEach(async () => {
    await client.close();
    await worker.close();
    await broker.close();
    await dir.remove();
  });

  it('answers a repeated keyed train with the first experiment instead of training again', async () => {
    const header = { ...QUICK, key: 'job:unit-1' };
    // The second waits at the broker (capacity 1) for the first, then gets its answer; the third comes after.
    const [first, second] = await Promise.all([train(client, header), train(client, header)]);
    const third = await train(client, header);
    assert.equal(second.result.experimentId, first.result.experimentId);
    assert.equal(third.result.experimentId, first.result.experimentId);
    assert.deepEqual(second.progress, [], 'the answer of a finished key comes without progress');
    const experiments = await client.requestJson<ExperimentSummary[]>(RUNS_LIST, [encodeJson({})]);
    assert.deepEqual(experiments.map((e) => e.id), [first.result.experimentId]);

    const other = await train(client, { ...QUICK, key: 'job:unit-2' });
    assert.notEqual(other.result.experimentId, first.result.experimentId, 'another key trains again');
  });

  it('refuses a key that is not an idempotency key', async () => {
    await assert.rejects(train(client, { ...QUICK, key: 'has space' }), (err: { code?: string }) => err.code === 'BAD_REQUEST');
  });
});

describe('a training job across brokers', function () {
  this.timeout(90_000);
  let dir: { path: string; remove: () => Promise<void> };
  let b1: Broker;
  let b2: Broker;
  let client: ZerveClient;
  const processes: CliProcess[] = [];

  /** A worker process connected to both brokers, once it registered a service matching `service` on each. */
  async function spawnOnBoth(args: string[], service: string): Promise<CliProcess> {
    const matches = (cli: CliProcess) => (w: WorkerInfo) => w.pid === cli.pid && w.services.includes(service);
    const cli = new CliProcess(['worker', ...args, '--connect', `${b1.backendEndpoint},${b2.backendEndpoint}`, '--broker', `${b1.frontendEndpoint},${b2.frontendEndpoint}`]);
    processes.push(cli);
    const exitedEarly = cli.exited.then(([code]) => {
      throw new Error(`worker exited (${code}) before registering: ${cli.stderr}`);
    });
    exitedEarly.catch(() => undefined);
    await Promise.race([Promise.all([nextWorker(b1, matches(cli)), nextWorker(b2, matches(cli))]), exitedEarly]);
    return cli;
  }

  beforeEach(async () => {
    dir = await tempDir('zerve-keyed-failover-');
    b1 = await startBroker();
    b2 = await startBroker();
    client = new ZerveClient({ broker: `${b1.frontendEndpoint},${b2.frontendEndpoint}`, timeoutMs: 20_000, heartbeatIntervalMs: TEST_HEARTBEAT_MS });
  });

  afterEach(async () => {
    await client.close();
    await Promise.all(processes.splice(0).map((p) => p.kill('SIGTERM')));
    await b1.close();
    await b2.close();
    await dir.remove();
  });

  it('finishes a training job once when the broker carrying its train request dies: one job, one experiment, one model version', async () => {
    const models = join(dir.path, 'models');
    await Promise.all([
      spawnOnBoth(['training', '--data', join(dir.path, 'training'), '--models', models], TRAIN_SERVICE),
      spawnOnBoth(['jobs', '--data', join(dir.path, 'jobs')], JOBS_SUBMIT),
    ]);
    // Long enough to outlive the kill (a few epochs and the refit), cheap enough for a loaded machine.
    const header: TrainHeader = { ...QUICK, epochs: 6, params: { hidden: 'none', patience: 100 }, export: { name: 'keyed-failover' } };
    const ticket = await client.requestJson<JobTicket>(JOBS_SUBMIT, trainingJobFrames(header, { key: 'scenario-4' }));
    const status = () => client.requestJson<JobStatus>(JOBS_STATUS, [encodeJson({ id: ticket.id })]);
    const progressOf = (s: JobStatus) => s.progress.map((p) => p.data as TrainProgressMessage);

    await eventually('a first epoch', async () => progressOf(await status()).some((m) => m.type === 'epoch'));
    // The broker holding the train request: the one where the training worker's `train` connection has it in flight.
    const carrier = await eventually('the broker carrying the train request', async () => {
      for (const broker of [b1, b2]) {
        const direct = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 5000 });
        try {
          const workers = await direct.workers();
          if (workers.some((w) => w.services.includes(TRAIN_SERVICE) && w.inFlight > 0)) return broker;
        } finally {
          await direct.close();
        }
      }
      return undefined;
    });
    await carrier.close();
    // Nothing more can come through the closed broker: what follows came through the other one.
    const atKill = progressOf(await status()).length;

    const done = await eventually('the job to finish', async () => {
      const s = await status();
      return s.state === 'succeeded' || s.state === 'failed' ? s : undefined;
    });
    assert.equal(done.state, 'succeeded', JSON.stringify(done.failure));
    assert.equal(done.attempts, 1, 'the job ran one attempt');
    const progress = progressOf(done);
    assert.equal(progress.filter((m) => m.type === 'started').length, 1, 'one experiment started');
    assert.ok(progress.length > atKill, 'progress went on through the other broker');
    const result = done.result as TrainResultMessage;

    const experiments = await client.requestJson<ExperimentSummary[]>(RUNS_LIST, [encodeJson({})]);
    assert.deepEqual(experiments.map((e) => e.id), [result.experimentId], 'one experiment in the run store');
    assert.deepEqual(await versionsOf(models, 'keyed-failover'), [result.model!.version], 'one exported model version');
  });
});
