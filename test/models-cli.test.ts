/**
 * The CLI through the cluster: two training hosts and one inference host, each with its own data and
 * models folders, on loopback; `zerve runs|datasets|models list` and `zerve status` ask the broker.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import type { RunRecord, TrainResultMessage } from '../shared/training.ts';
import { HOSTNAME } from '../shared/protocol.ts';
import type { ModelListing } from '../scripts/model-commands.ts';
import { CliProcess, TEST_ENV, runCli, spawnWorker, startBroker, tempDir } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';
import { image } from './fixtures/inference-models.ts';

// Training blocks a worker's event loop for a moment at times; on a loaded machine 200 ms heartbeats lose it.
const HEARTBEAT_MS = 1000;
const ENV = { ...TEST_ENV, ZERVE_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS), ZERVE_MODEL_SYNC_INTERVAL_MS: '300', ZERVE_MODEL_SETTLE_MS: '300', ZERVE_POLL_INTERVAL_MS: '300' };

describe('the CLI through the cluster (two training hosts, one inference host, loopback)', function () {
  this.timeout(180_000);
  let broker: Broker;
  let client: ZerveClient;
  const processes: CliProcess[] = [];
  const folders: { path: string; remove: () => Promise<void> }[] = [];
  const hosts: { data: string; models: string; worker: CliProcess }[] = [];
  let inference: CliProcess;
  let trained: TrainResultMessage;
  const cli = async (...args: string[]) => {
    const result = await runCli([...args, '--broker', broker.frontendEndpoint], ENV);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout;
  };

  before(async () => {
    broker = await startBroker({ defaultDeadlineMs: 60_000, heartbeatIntervalMs: HEARTBEAT_MS });
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 20_000 });
    for (let i = 0; i < 2; i++) {
      const dir = await tempDir('zerve-training-host-');
      folders.push(dir);
      const data = join(dir.path, 'data');
      const models = join(dir.path, 'models');
      const worker = await spawnWorker(broker, ['training', '--data', data, '--models', models, '--broker', broker.frontendEndpoint], (w) => w.services.includes('train'), ENV);
      processes.push(worker);
      hosts.push({ data, models, worker });
    }
    const empty = await tempDir('zerve-inference-host-');
    folders.push(empty);
    inference = await spawnWorker(broker, ['inference', '--models', empty.path, '--broker', broker.frontendEndpoint], (w) => w.kind === 'inference', ENV);
    processes.push(inference);
    trained = JSON.parse(await cli('train', '--dataset', 'mnist', '--name', 'tiny', '--epochs', '2', '--param', 'hidden=16', '--json')) as TrainResultMessage;
    assert.deepEqual(trained.model, { name: 'tiny', version: '1' });
  });

  after(async () => {
    await client.close();
    await Promise.all(processes.splice(0).map((p) => p.kill()));
    await broker.close();
    await Promise.all(folders.splice(0).map((f) => f.remove()));
  });

  it("serves the model a training host exported on the inference host, whose models folder was empty", async () => {
    await eventually('tiny served by the inference host', async () => (await client.workers()).some((w) => w.pid === inference.pid && w.models?.some((m) => m.name === 'tiny')));
    const reply = await client.classify('tiny', image('digit.png'));
    assert.equal(reply.model, 'tiny');
    assert.equal(reply.version, '1');
    assert.equal(reply.predictions.length, 5);
  });

  it('lists, shows and compares the experiment through the broker whichever host trained it; --data reads one host only', async () => {
    // `runs list` asks every training host and merges (shared/cluster-runs.ts), although only one host
    // holds it (checked offline below). Asked three times: a CLI that sent one plain runs.list, which the
    // broker hands to either host in turn, would miss it at least once.
    for (let i = 0; i < 3; i++) {
      const list = JSON.parse(await cli('runs', 'list', '--format', 'json')) as RunRecord[];
      assert.ok(list.some((r) => r.experimentId === trained.experimentId), `attempt ${i + 1} lists ${trained.experimentId}`);
    }
    const shown = JSON.parse(await cli('runs', 'show', trained.experimentId)) as { id: string; runs: RunRecord[] };
    assert.equal(shown.id, trained.experimentId);
    const compared = await cli('runs', 'compare', trained.experimentId, '--format', 'markdown');
    assert.match(compared, new RegExp(`\\| ${trained.best.runId} \\|`));
    assert.match(compared, /tiny@1/);
    const offline = await Promise.all(hosts.map((h) => runCli(['runs', 'list', '--format', 'json', '--data', h.data], ENV)));
    const holding = offline.filter((r) => (JSON.parse(r.stdout) as RunRecord[]).some((run) => run.experimentId === trained.experimentId));
    assert.equal(holding.length, 1, 'exactly one host recorded it');
    const missing = await runCli(['runs', 'show', 'e00000000', '--broker', broker.frontendEndpoint], ENV);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /UNKNOWN_RUN/);
  });

  it('lists datasets and models through the broker', async () => {
    const datasets = JSON.parse(await cli('datasets', 'list', '--json')) as { id: string }[];
    assert.deepEqual(datasets.map((d) => d.id), ['mnist']);
    const models = JSON.parse(await cli('models', 'list', '--json')) as ModelListing[];
    const tiny = models.find((m) => m.name === 'tiny');
    assert.ok(tiny, 'tiny is listed');
    assert.deepEqual(tiny.versions.map((v) => v.version), ['1']);
    assert.ok(tiny.versions[0]!.holders! >= 2, 'held by the training host and the inference host');
    assert.ok(tiny.versions[0]!.servedBy!.includes(`${HOSTNAME}/${inference.pid}`));
    const local = JSON.parse((await runCli(['models', 'list', '--json', '--models', hosts.find((h) => h.worker.pid)!.models], ENV)).stdout) as ModelListing[];
    assert.deepEqual(local.find((m) => m.name === 'tiny')?.versions.map((v) => v.version), ['1'], 'the offline listing of a host folder shows tiny version 1');
  });

  it('shows status grouped by host, with each worker kind, pid, models with versions, capacity and in-flight count', async () => {
    const text = (await cli('status')).replace(/\x1b\[[0-9;]*m/g, '');
    assert.match(text, new RegExp(`host ${HOSTNAME}: \\d+ worker connection\\(s\\)`));
    const row = text.split('\n').find((l) => l.includes(String(inference.pid)) && l.includes('inference'));
    assert.ok(row, 'a row for the inference worker');
    assert.match(row, /tiny 1\*/);
    assert.match(row, /│ 2 +│ 0 +│/, `capacity 2, nothing in flight: ${row}`);
    for (const h of hosts) assert.match(text, new RegExp(`training +│ ${h.worker.pid}`));
    const json = JSON.parse(await cli('status', '--json')) as { workers: { pid: number; models?: { name: string; versions: string[]; latest: string }[] }[] };
    assert.deepEqual(json.workers.find((w) => w.pid === inference.pid && w.models)?.models, [{ name: 'tiny', versions: ['1'], latest: '1' }]);
  });
});
