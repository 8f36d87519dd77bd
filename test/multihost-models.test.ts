/**
 * Multi-host scenarios 2 and 6 of issue 8 on real hosts: network namespaces joined by veth links
 * (test/helpers/netns.ts), each host with its own empty models/ and data/ folders, and nothing shared
 * but the broker, reached over the links, with CURVE on its worker socket: the trained model travels
 * from host b's training worker (its model holder) to host a under the hosts' own keys. Every command
 * runs inside a host with `ip netns exec`.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyFiles } from '../shared/curve-keys.ts';
import type { ClassifyReply, WorkerInfo } from '../shared/messages.ts';
import type { RunRecord, TrainResultMessage } from '../shared/training.ts';
import { fixtureImage, TEST_ENV, type CliProcess } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';
import { NetnsLab, skipUnlessNetns, type NetnsHost } from './helpers/netns.ts';

const FRONTEND_PORT = 5555;
const BACKEND_PORT = 5556;
// Training blocks a worker's event loop for moments; on a loaded 2-core machine faster heartbeats lose it.
const LAB_ENV: NodeJS.ProcessEnv = {
  ...TEST_ENV,
  ZERVE_HEARTBEAT_INTERVAL_MS: '1000',
  ZERVE_MODEL_SYNC_INTERVAL_MS: '500',
  ZERVE_MODEL_SETTLE_MS: '500',
  ZERVE_POLL_INTERVAL_MS: '500',
};

describe('multi-host models and history (network namespaces, CURVE)', function () {
  this.timeout(240_000);
  let lab: NetnsLab;
  let a: NetnsHost;
  let b: NetnsHost;
  let frontend: string;
  let inference: CliProcess;
  let trained: TrainResultMessage;

  /** `zerve <args> --broker <frontend>` inside `host`; fails the test on a non-zero exit. */
  async function zerve(host: NetnsHost, ...args: string[]): Promise<string> {
    const result = await lab.run(host, [...args, '--broker', frontend], LAB_ENV);
    assert.equal(result.code, 0, `zerve ${args.join(' ')} on ${host.name}: ${result.stderr}`);
    return result.stdout;
  }

  /** Each poll of `workers` starts a `zerve status` process (1-2 s of CPU): poll less often than the default. */
  const CLI_POLL_MS = 200;
  const workers = async (host: NetnsHost) => (JSON.parse(await zerve(host, 'status', '--json')) as { workers: WorkerInfo[] }).workers;

  before(async function () {
    skipUnlessNetns(this);
    lab = await NetnsLab.create(['a', 'b']);
    [a, b] = [lab.host('a'), lab.host('b')];
    frontend = lab.tcp(lab.broker, FRONTEND_PORT);
    const backend = lab.tcp(lab.broker, BACKEND_PORT);
    const keys = join(lab.dir, 'keys');
    const allowed = join(lab.dir, 'authorized-workers');
    await mkdir(allowed);
    for (const name of ['broker', 'a', 'b']) await generateKeyFiles(name, keys);
    for (const name of ['a', 'b']) await copyFile(join(keys, `${name}.pub`), join(allowed, `${name}.pub`));
    const curve = (host: string) => ['--curve-key', join(keys, `${host}.key`), '--broker-key', join(keys, 'broker.pub')];
    lab.spawn(lab.broker, ['broker', '--frontend', frontend, '--backend', backend, '--curve-key', join(keys, 'broker.key'), '--authorized-workers', allowed], LAB_ENV);
    // Host a: an inference worker over its own, empty models folder. Host b: a training worker over its own folders.
    inference = lab.spawn(a, ['worker', 'inference', '--connect', backend, '--broker', frontend, '--models', a.models, ...curve('a')], LAB_ENV);
    lab.spawn(b, ['worker', 'training', '--connect', backend, '--broker', frontend, '--data', b.data, '--models', b.models, ...curve('b')], LAB_ENV);
    await eventually('both hosts registered', async () => {
      const list = await workers(a);
      return list.some((w) => w.host === a.ns && w.kind === 'inference') && list.some((w) => w.host === b.ns && w.services.includes('train'));
    }, undefined, CLI_POLL_MS);
    trained = JSON.parse(await zerve(b, 'train', '--dataset', 'mnist', '--name', 'tiny', '--epochs', '2', '--param', 'hidden=16', '--json')) as TrainResultMessage;
  });

  after(async () => {
    await lab?.close();
  });

  it("2. serves the model trained on host b's training worker on host a's inference worker, whose models folder was empty, with no restart", async () => {
    assert.deepEqual(trained.model, { name: 'tiny', version: '1' });
    const served = await eventually('host a serves tiny 1', async () =>
      (await workers(a)).find((w) => w.host === a.ns && w.kind === 'inference' && w.models?.some((m) => m.name === 'tiny' && m.latest === '1')),
    undefined, CLI_POLL_MS);
    assert.equal(served.pid, inference.pid, 'the same inference worker process, never restarted');
    assert.equal(inference.child.exitCode, null);
    const [line] = (await zerve(a, 'classify', fixtureImage('digit.png'), '--model', 'tiny', '--json')).trim().split('\n');
    const reply = JSON.parse(line!) as ClassifyReply & { file: string };
    assert.equal(reply.model, 'tiny');
    assert.equal(reply.version, '1');
    assert.deepEqual((await readdir(join(a.models, 'tiny', '1'))).sort(), ['config.json', 'labels.txt', 'model.onnx']);
    assert.deepEqual(await readdir(b.models).then((l) => l.filter((n) => !n.startsWith('.'))), ['tiny'], 'trained into host b\'s own folder');
  });

  it('6. lists on host a, which has no training worker and no data, the experiment trained on host b', async () => {
    const list = JSON.parse(await zerve(a, 'runs', 'list', '--format', 'json')) as RunRecord[];
    const runs = list.filter((r) => r.experimentId === trained.experimentId);
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.host, b.ns, 'run on host b');
    assert.deepEqual(await readdir(a.data), [], "host a's data folder is still empty");
  });
});
