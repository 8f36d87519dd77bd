import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { JOBS_CANCEL, JOBS_STATUS, JOBS_SUBMIT, isFinishedState, type JobStatus, type JobTicket } from '../shared/jobs.ts';
import { encodeJson } from '../shared/messages.ts';
import { RUNS_GET, RUNS_LIST, trainingJobFrames, type ExperimentDetail, type ExperimentSummary, type TrainHeader, type TrainProgressMessage, type TrainResultMessage } from '../shared/training.ts';
import { spawnWorker, startBroker, tempDir, TEST_ENV, type CliProcess } from './helpers/cluster.ts';

/**
 * Long enough to be killed or canceled mid-run: many epochs on mnist, no early stop. An epoch of 128
 * hidden units takes 1-2 s here, long enough for a cancel to land inside one (512 took 8-11 s an epoch
 * and most of this file's time).
 */
const SLOW_REQUEST: TrainHeader = {
  datasetId: 'mnist',
  family: 'mlp',
  params: { hidden: 128, learningRate: 0.001, patience: 1000 },
  epochs: 200,
  seed: 3,
};
const QUICK_REQUEST: TrainHeader = { datasetId: 'mnist', family: 'mlp', params: { hidden: 16 }, epochs: 2, seed: 1 };

describe('training as durable jobs', function () {
  this.timeout(120_000);
  let dir: { path: string; remove: () => Promise<void> };
  let broker: Broker;
  let client: ZerveClient;
  let jobs: CliProcess;
  const training: CliProcess[] = [];

  const startTraining = async (env: NodeJS.ProcessEnv = TEST_ENV) => {
    const args = ['training', '--data', join(dir.path, 'training'), '--models', join(dir.path, 'models'), '--broker', broker.frontendEndpoint];
    const worker = await spawnWorker(broker, args, (w) => w.services.includes('train'), env);
    training.push(worker);
    return worker;
  };
  const submit = async (header: TrainHeader, maxAttempts?: number) =>
    (await client.requestJson<JobTicket>(JOBS_SUBMIT, trainingJobFrames(header, maxAttempts ? { maxAttempts } : {}))).id;
  const status = (id: string) => client.requestJson<JobStatus>(JOBS_STATUS, [encodeJson({ id })]);
  const progressOf = (s: JobStatus) => s.progress.map((p) => p.data as TrainProgressMessage);

  /** Polls the job until `until` holds. */
  async function waitFor(id: string, until: (s: JobStatus) => boolean, what: string): Promise<JobStatus> {
    for (let i = 0; i < 1200; i++) {
      const s = await status(id);
      if (until(s)) return s;
      if (isFinishedState(s.state)) throw new Error(`job ended ${s.state} (${JSON.stringify(s.failure)}) while waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`gave up waiting for ${what}`);
  }
  const finished = (id: string) => waitFor(id, (s) => isFinishedState(s.state), 'the end');
  const epochsSeen = (s: JobStatus) => progressOf(s).filter((m) => m.type === 'epoch').length;

  beforeEach(async () => {
    dir = await tempDir('zerve-training-jobs-');
    broker = await startBroker();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 20_000 });
    jobs = await spawnWorker(broker, ['jobs', '--data', join(dir.path, 'jobs'), '--broker', broker.frontendEndpoint], (w) => w.services.includes(JOBS_SUBMIT));
  });

  afterEach(async () => {
    await client.close();
    await Promise.all([jobs.kill('SIGTERM'), ...training.splice(0).map((w) => w.kill('SIGTERM'))]);
    await broker.close();
    await dir.remove();
  });

  it('fails the job with WORKER_LOST when its training worker dies, and the next job trains', async () => {
    const first = await startTraining();
    const id = await submit(SLOW_REQUEST);
    await waitFor(id, (s) => epochsSeen(s) >= 1, 'a first epoch');
    await first.kill('SIGKILL');
    const lost = await finished(id);
    assert.equal(lost.state, 'failed');
    assert.equal(lost.failure?.code, 'WORKER_LOST');
    assert.equal(lost.attempts, 1);

    // A new worker on the same data directory marks the dead worker's experiment failed.
    await startTraining();
    const experimentId = progressOf(lost).find((m) => m.type === 'started')!.experimentId;
    const experiment = await client.requestJson<ExperimentDetail>(RUNS_GET, [encodeJson({ id: experimentId })]);
    assert.equal(experiment.status, 'failed');
    assert.match(experiment.error ?? '', /^WORKER_LOST/);
    assert.ok(experiment.runs.every((r) => r.status === 'failed'));

    const next = await finished(await submit(QUICK_REQUEST));
    assert.equal(next.state, 'succeeded', JSON.stringify(next.failure));
    assert.ok((next.result as TrainResultMessage).test.accuracy > 0.5);
  });

  it('trains again on another worker when the job allows a second attempt', async () => {
    // Both workers up before the job: the one the broker picks is killed right after its first epoch,
    // with no worker start between (at 1-2 s an epoch, a start under load can outlast the epochs left).
    const workers = await Promise.all([startTraining(), startTraining()]);
    const id = await submit({ ...SLOW_REQUEST, epochs: 3 }, 2);
    const running = await waitFor(id, (s) => epochsSeen(s) >= 1, 'a first epoch');
    const firstPid = progressOf(running).find((m) => m.type === 'started')!.pid;
    const first = workers.find((w) => w.pid === firstPid)!;
    const second = workers.find((w) => w !== first)!;
    await first.kill('SIGKILL');
    const done = await finished(id);
    assert.equal(done.state, 'succeeded', JSON.stringify(done.failure));
    assert.equal(done.attempts, 2);
    const pids = progressOf(done).filter((m) => m.type === 'started').map((m) => m.type === 'started' && m.pid);
    assert.deepEqual(pids.slice(-1), [second.pid]);
  });

  it('hands a training back when its worker gets SIGTERM, after the drain timeout, and it trains again on another worker', async () => {
    const first = await startTraining({ ...TEST_ENV, ZERVE_DRAIN_TIMEOUT_MS: '300' });
    // Narrower than SLOW_REQUEST: shorter mini-batches keep heartbeats flowing on a loaded machine.
    const id = await submit({ ...SLOW_REQUEST, params: { ...SLOW_REQUEST.params as object, hidden: 64 }, epochs: 8 }, 2);
    const running = await waitFor(id, (s) => epochsSeen(s) >= 1, 'a first epoch');
    const experimentId = progressOf(running).find((m) => m.type === 'started')!.experimentId;
    const second = await startTraining();
    await first.kill('SIGTERM');
    // A clean exit, not a kill: the worker stopped the training itself, then closed.
    assert.deepEqual(await first.exited, [0, null]);
    assert.match(first.stdout + first.stderr, /drain timeout: aborting the requests still running/);
    // It stopped mid-run: fewer than the 8 epochs were recorded, and the experiment says why.
    const handedBack = await client.requestJson<ExperimentDetail>(RUNS_GET, [encodeJson({ id: experimentId })]);
    assert.equal(handedBack.status, 'failed');
    assert.match(handedBack.error ?? '', /^WORKER_LOST/);
    assert.ok(handedBack.runs[0]!.epochs!.length < 8, `epochs recorded: ${handedBack.runs[0]!.epochs!.length}`);

    const done = await finished(id);
    assert.equal(done.state, 'succeeded', JSON.stringify(done.failure));
    assert.equal(done.attempts, 2);
    const pids = progressOf(done).filter((m) => m.type === 'started').map((m) => m.type === 'started' && m.pid);
    assert.deepEqual(pids.slice(-1), [second.pid]);
  });

  it('stops the training within an epoch when the job is canceled, freeing the worker', async () => {
    await startTraining();
    const id = await submit(SLOW_REQUEST);
    const running = await waitFor(id, (s) => epochsSeen(s) >= 1, 'a first epoch');
    const experimentId = progressOf(running).find((m) => m.type === 'started')!.experimentId;
    const experiment = () => client.requestJson<ExperimentDetail>(RUNS_GET, [encodeJson({ id: experimentId })]);
    const canceled = await client.requestJson<JobStatus>(JOBS_CANCEL, [encodeJson({ id })]);
    assert.equal(canceled.state, 'canceled');
    const epochsAtCancel = (await experiment()).runs[0]!.epochs!.length;

    let ended = await experiment();
    for (let i = 0; i < 200 && ended.status !== 'canceled'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      ended = await experiment();
    }
    assert.equal(ended.status, 'canceled');
    assert.match(ended.error ?? '', /^CANCELED/);
    // An epoch takes seconds here: a cancel honoured only between epochs would record the one in progress.
    assert.equal(ended.runs[0]!.epochs!.length, epochsAtCancel);

    // The only training worker is free again.
    const next = await finished(await submit(QUICK_REQUEST));
    assert.equal(next.state, 'succeeded', JSON.stringify(next.failure));
  });

  it('never trains a job canceled while its request waited at the broker behind another training', async () => {
    await startTraining();
    const first = await submit(SLOW_REQUEST);
    await waitFor(first, (s) => epochsSeen(s) >= 1, 'the first job training');
    const queued = await submit({ ...QUICK_REQUEST, export: { name: 'never' } });
    await waitFor(queued, (s) => s.state === 'running', 'the second job sent to the broker');
    assert.equal((await client.requestJson<JobStatus>(JOBS_CANCEL, [encodeJson({ id: queued })])).state, 'canceled');
    await client.requestJson<JobStatus>(JOBS_CANCEL, [encodeJson({ id: first })]);

    // Once the worker is free the queued request reaches it, announces itself and is canceled at once.
    let experiments: ExperimentSummary[] = [];
    for (let i = 0; i < 300; i++) {
      experiments = await client.requestJson<ExperimentSummary[]>(RUNS_LIST, [encodeJson({})]);
      if (experiments.length === 2 && experiments.every((e) => e.status !== 'running')) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.deepEqual(experiments.map((e) => e.status), ['canceled', 'canceled']);
    assert.equal(experiments.find((e) => e.name === 'never')?.modelVersion, null);
  });

  it('refuses a job with a bad maxAttempts', async () => {
    const [submitFrame, body] = trainingJobFrames(QUICK_REQUEST);
    const bad = { ...JSON.parse(submitFrame!.toString()), maxAttempts: 0 };
    await assert.rejects(client.requestJson(JOBS_SUBMIT, [encodeJson(bad), body!]), (err: Error & { code?: string }) => err.code === 'BAD_REQUEST');
  });
});
