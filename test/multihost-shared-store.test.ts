/**
 * Issue #16, scenario 3, on real hosts (network namespaces, test/helpers/netns.ts): training workers
 * on hosts a and b write their experiments to one PostgreSQL database, and `zerve runs list --store`
 * on host c reads both from it while both workers are stopped. The test's PostgreSQL server listens
 * on 127.0.0.1 of the machine's namespace, which the hosts cannot reach, so they use its unix socket
 * (`TestPostgres.socketUrl`): namespaces share the file system.
 */
import assert from 'node:assert/strict';
import { ZerveClient } from '../shared/client.ts';
import { ZerveError } from '../shared/errors.ts';
import type { WorkerInfo } from '../shared/messages.ts';
import { TRAIN_SERVICE, requestTraining, type RunRecord, type TrainResultMessage } from '../shared/training.ts';
import { TEST_ENV, type CliProcess } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';
import { NetnsLab, skipUnlessNetns, type NetnsHost } from './helpers/netns.ts';
import { TestPostgres, skipUnlessPostgres } from './helpers/postgres.ts';

const BACKEND_PORT = 5556;
/** Slower heartbeats than the single-host tests' 200 ms, as in multihost.test.ts: a loaded 2-core machine. */
const LAB_ENV: NodeJS.ProcessEnv = { ...TEST_ENV, ZERVE_HEARTBEAT_INTERVAL_MS: String(500) };
/** The cheapest training that records an experiment: built-in digits, softmax regression, one epoch. */
const QUICK_TRAINING = { datasetId: 'mnist', family: 'mlp' as const, params: { hidden: 'none' }, epochs: 1, seed: 1 };

describe('multi-host experiments on a shared PostgreSQL store (network namespaces)', function () {
  this.timeout(120_000);
  let lab: NetnsLab | undefined;
  let server: TestPostgres | undefined;
  let broker: CliProcess;
  let client: ZerveClient;
  let started: CliProcess[] = [];

  before(async function () {
    skipUnlessNetns(this);
    skipUnlessPostgres(this);
    [lab, server] = await Promise.all([NetnsLab.create(['a', 'b', 'c']), TestPostgres.start()]);
  });
  after(async () => {
    await lab?.close();
    await server?.close();
  });
  beforeEach(() => {
    broker = spawn(lab!.broker, ['broker', '--frontend', lab!.ipc('frontend'), '--backend', lab!.tcp(lab!.broker, BACKEND_PORT), '--insecure']);
    client = new ZerveClient({ broker: lab!.ipc('frontend'), timeoutMs: 60_000 });
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed') {
      for (const p of started) process.stderr.write(`output of pid ${p.pid}:\n${p.stdout.slice(-2000)}\n${p.stderr.slice(-2000)}\n`);
    }
    await client.close();
    await Promise.all(started.map((p) => p.kill()));
    started = [];
  });

  function spawn(host: NetnsHost, args: string[]): CliProcess {
    const p = lab!.spawn(host, args, LAB_ENV);
    started.push(p);
    return p;
  }

  /** A training worker on `host`, on the shared store; `--capacity 1`, so two trainings sent at once go one to each worker. */
  function trainingWorker(host: NetnsHost): CliProcess {
    const args = ['worker', 'training', '--connect', lab!.tcp(lab!.broker, BACKEND_PORT), '--data', host.data, '--models', host.models, '--store', server!.socketUrl, '--capacity', '1'];
    return spawn(host, args);
  }

  async function waitForWorkers(predicate: (workers: WorkerInfo[]) => boolean, what: string): Promise<void> {
    await eventually(
      what,
      async () => {
        try {
          return predicate(await client.workers({ timeoutMs: 3_000 }));
        } catch (err) {
          // A broker process starting on a loaded machine may take a while to answer.
          if (err instanceof ZerveError && err.code === 'TIMEOUT') return false;
          throw err;
        }
      },
      60_000,
      200,
      () => started.map((p) => p.stderr).join('\n'),
    );
  }

  it('lists the experiments of training workers on two hosts from a third once both have stopped', async () => {
    const [a, b, c] = [lab!.host('a'), lab!.host('b'), lab!.host('c')];
    const workers = [trainingWorker(a), trainingWorker(b)];
    const trains = (host: NetnsHost) => (w: WorkerInfo) => w.host === host.ns && w.services.includes(TRAIN_SERVICE);
    await waitForWorkers((ws) => ws.some(trains(a)) && ws.some(trains(b)), 'training workers on hosts a and b');

    const results: TrainResultMessage[] = await Promise.all([requestTraining(client, QUICK_TRAINING), requestTraining(client, QUICK_TRAINING)]);
    const hostOf = new Map(results.map((r) => [r.experimentId, r.runs[0]?.host]));
    assert.deepEqual([...hostOf.values()].sort(), [a.ns, b.ns].sort(), 'one experiment trained on each host');

    for (const worker of workers) {
      await worker.kill('SIGTERM');
      assert.deepEqual(await worker.exited, [0, null], `the training worker ${worker.pid} exited cleanly`);
    }
    await waitForWorkers((ws) => !ws.some((w) => w.services.includes(TRAIN_SERVICE)), 'no training worker left');

    const listed = await lab!.run(c, ['runs', 'list', '--store', server!.socketUrl, '--format', 'json'], LAB_ENV);
    assert.equal(listed.code, 0, listed.stderr);
    const runs = JSON.parse(listed.stdout) as RunRecord[];
    const found = new Map(runs.filter((r) => hostOf.has(r.experimentId)).map((r) => [r.experimentId, r]));
    assert.equal(found.size, 2, `both experiments are listed: ${listed.stdout}`);
    for (const [experimentId, host] of hostOf) {
      assert.equal(found.get(experimentId)?.host, host, `experiment ${experimentId} names the host that ran it`);
      assert.equal(found.get(experimentId)?.status, 'succeeded');
    }
    assert.equal(broker.child.exitCode, null, 'the broker still runs');
  });
});
