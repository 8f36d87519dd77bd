/**
 * Two live brokers on two hosts, inference workers on two more hosts registered on both (CURVE on the
 * worker sockets, each broker with its own key pair), and a client on both brokers: the test process,
 * which reaches each broker's client socket through an ipc endpoint (test/helpers/netns.ts).
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ZerveClient } from '../shared/client.ts';
import { ZerveError } from '../shared/errors.ts';
import { generateKeyFiles } from '../shared/curve-keys.ts';
import type { ClassifyReply, WorkerInfo } from '../shared/messages.ts';
import { addModelVersion } from '../shared/model-exchange/model-writer.ts';
import { image, imagePath, modelFile } from './fixtures/inference-models.ts';
import { TEST_ENV, type CliProcess } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';
import { NetnsLab, skipUnlessNetns, type NetnsHost } from './helpers/netns.ts';

const BACKEND_PORT = 5556;
const LAB_HEARTBEAT_MS = 500;
const LAB_ENV: NodeJS.ProcessEnv = { ...TEST_ENV, ZERVE_HEARTBEAT_INTERVAL_MS: String(LAB_HEARTBEAT_MS) };
const KITTEN = 281;
const IN_FLIGHT = 1000;

describe('several brokers across hosts (network namespaces, CURVE)', function () {
  this.timeout(240_000);
  let lab: NetnsLab;
  let keys: string;
  let brokerHosts: NetnsHost[];
  let workerHosts: NetnsHost[];
  const brokers: CliProcess[] = [];
  const workers: CliProcess[] = [];
  let client: ZerveClient;
  const key = (name: string) => join(keys, `${name}.key`);
  const frontend = (i: number) => lab.ipc(`frontend-${i}`);

  before(async function () {
    skipUnlessNetns(this);
    lab = await NetnsLab.create(['b1', 'b2', 'w1', 'w2']);
    brokerHosts = [lab.host('b1'), lab.host('b2')];
    workerHosts = [lab.host('w1'), lab.host('w2')];
    keys = join(lab.dir, 'keys');
    const allowed = join(lab.dir, 'authorized-workers');
    await mkdir(allowed, { recursive: true });
    for (const name of ['b1', 'b2', 'w1', 'w2']) await generateKeyFiles(name, keys);
    for (const host of workerHosts) {
      await copyFile(join(keys, `${host.name}.pub`), join(allowed, `${host.name}.pub`));
      await addModelVersion({ models: host.models, name: 'squeezenet', file: modelFile('squeezenet'), labels: modelFile('squeezenet', 'labels.txt'), channels: 'bgr' });
    }
    for (let i = 0; i < 2; i++) brokers[i] = startBroker(i);
    const connect = brokerHosts.map((h) => lab.tcp(h, BACKEND_PORT)).join(',');
    const brokerKeys = brokerHosts.map((h) => join(keys, `${h.name}.pub`)).join(',');
    for (const host of workerHosts) {
      const args = ['worker', 'inference', '--connect', connect, '--broker-key', brokerKeys, '--curve-key', key(host.name), '--models', host.models, '--capacity', '4'];
      workers.push(lab.spawn(host, args, LAB_ENV));
    }
    client = new ZerveClient({ broker: `${frontend(0)},${frontend(1)}`, timeoutMs: 60_000, heartbeatIntervalMs: LAB_HEARTBEAT_MS });
    for (let i = 0; i < 2; i++) await registeredOn(i);
  });

  after(async () => {
    await client?.close();
    await lab?.close();
  });

  afterEach(function () {
    if (this.currentTest?.state !== 'failed') return;
    for (const [i, b] of brokers.entries()) process.stderr.write(`broker ${i + 1} output:\n${b.stdout.slice(-2000)}\n${b.stderr.slice(-2000)}\n`);
  });

  function startBroker(i: number): CliProcess {
    const host = brokerHosts[i]!;
    const args = ['broker', '--frontend', frontend(i), '--backend', lab.tcp(host, BACKEND_PORT), '--curve-key', key(host.name), '--authorized-workers', join(lab.dir, 'authorized-workers')];
    return lab.spawn(host, args, LAB_ENV);
  }

  /** Waits until broker `i` has both worker hosts registered, and returns its workers. */
  async function registeredOn(i: number): Promise<WorkerInfo[]> {
    const one = new ZerveClient({ broker: frontend(i), timeoutMs: 3_000 });
    let found: WorkerInfo[] = [];
    try {
      await eventually(
        `both worker hosts on broker ${i + 1}`,
        async () => {
          try {
            found = await one.workers();
          } catch (err) {
            if (err instanceof ZerveError && err.code === 'TIMEOUT') return false;
            throw err;
          }
          return workerHosts.every((h) => found.some((w) => w.host === h.ns && w.services.includes('classify.squeezenet')));
        },
        90_000,
      );
    } finally {
      await one.close();
    }
    return found;
  }

  /** Sends IN_FLIGHT classifications, SIGKILLs broker `i` once some are answered, and checks every answer. */
  async function classifyThroughKill(i: number): Promise<void> {
    let answered = 0;
    const answers = new Array<number>(IN_FLIGHT).fill(0);
    let killed!: () => void;
    const someAnswered = new Promise<void>((resolve) => (killed = resolve));
    const kitten = image('kitten.png');
    const requests = Array.from({ length: IN_FLIGHT }, (_, n) =>
      client.classify('squeezenet', kitten).then((reply: ClassifyReply) => {
        answers[n]!++;
        if (++answered === 100) killed();
        return reply.predictions[0]!.index;
      }),
    );
    await someAnswered;
    await brokers[i]!.kill('SIGKILL');
    const indexes = await Promise.all(requests);
    assert.deepEqual(indexes, new Array(IN_FLIGHT).fill(KITTEN), 'every request answered correctly');
    assert.deepEqual(answers, new Array(IN_FLIGHT).fill(1), 'every caller answered exactly once');
  }

  it(`answers all ${IN_FLIGHT} classifications in flight, each once, when broker 1 is SIGKILLed`, async () => {
    await classifyThroughKill(0);
  });

  it('registers every worker on broker 1 again when it comes back, and requests go through both brokers', async () => {
    brokers[0] = startBroker(0);
    await registeredOn(0);
    const before = client.brokers.map((b) => b.replies);
    await eventually('the client is connected to broker 1 again', async () => client.brokers[0]!.up, 30_000);
    const replies = await Promise.all(Array.from({ length: 40 }, () => client.classify('squeezenet', image('kitten.png'))));
    assert.ok(replies.every((r) => r.predictions[0]!.index === KITTEN));
    const through = client.brokers.map((b, n) => b.replies - before[n]!);
    assert.deepEqual(through, [20, 20], 'requests reach the workers through both brokers, in turn');
  });

  it(`answers all ${IN_FLIGHT} classifications in flight, each once, when broker 2 is SIGKILLed`, async () => {
    await classifyThroughKill(1);
  });
});

describe('several brokers across hosts: a broker cut off (link down), with the client on a host of its own', function () {
  this.timeout(240_000);
  const CLASSIFICATIONS = 300;
  let lab: NetnsLab;

  before(async function () {
    skipUnlessNetns(this);
    lab = await NetnsLab.create(['b1', 'b2', 'w1', 'c1']);
  });

  after(async () => {
    await lab?.close();
  });

  it(`answers all ${CLASSIFICATIONS} classifications of a client on another host, each once, when broker 1's link is cut`, async () => {
    const keys = join(lab.dir, 'keys');
    const allowed = join(lab.dir, 'authorized-workers');
    await mkdir(allowed, { recursive: true });
    for (const name of ['b1', 'b2', 'w1']) await generateKeyFiles(name, keys);
    await copyFile(join(keys, 'w1.pub'), join(allowed, 'w1.pub'));
    const [b1, b2, w1, c1] = ['b1', 'b2', 'w1', 'c1'].map((name) => lab.host(name)) as [NetnsHost, NetnsHost, NetnsHost, NetnsHost];
    await addModelVersion({ models: w1.models, name: 'squeezenet', file: modelFile('squeezenet'), labels: modelFile('squeezenet', 'labels.txt'), channels: 'bgr' });
    const brokers = [b1, b2].map((host) =>
      lab.spawn(host, ['broker', '--frontend', lab.tcp(host, 5555), '--backend', lab.tcp(host, BACKEND_PORT), '--curve-key', join(keys, `${host.name}.key`), '--authorized-workers', allowed], LAB_ENV),
    );
    const connect = [b1, b2].map((h) => lab.tcp(h, BACKEND_PORT)).join(',');
    const brokerKeys = [b1, b2].map((h) => join(keys, `${h.name}.pub`)).join(',');
    lab.spawn(w1, ['worker', 'inference', '--connect', connect, '--broker-key', brokerKeys, '--curve-key', join(keys, 'w1.key'), '--models', w1.models, '--capacity', '4'], LAB_ENV);
    const frontends = [b1, b2].map((h) => lab.tcp(h, 5555)).join(',');
    // Both brokers list the worker (zerve status on the client host asks each).
    await eventually(
      'the worker on both brokers',
      async () => {
        const status = await lab.run(c1, ['status', '--broker', frontends, '--json', '--timeout-ms', '2000'], LAB_ENV);
        const parsed = JSON.parse(status.stdout || '{"brokers":[]}') as { brokers: { workers?: WorkerInfo[] }[] };
        return parsed.brokers.length === 2 && parsed.brokers.every((b) => b.workers?.some((w) => w.services.includes('classify.squeezenet')));
      },
      90_000,
    );
    const files = new Array<string>(CLASSIFICATIONS).fill(imagePath('kitten.png'));
    const classify = lab.spawn(c1, ['classify', '--model', 'squeezenet', '--broker', frontends, '--json', '--timeout-ms', '60000', ...files], LAB_ENV);
    await eventually('some answers', () => classify.stdout.split('\n').length > 50 || classify.child.exitCode !== null, 60_000);
    await lab.cut(b1);
    const [code] = await classify.exited;
    const lines = classify.stdout.trim().split('\n').filter((l) => l.startsWith('{"file"')).map((l) => JSON.parse(l) as ClassifyReply & { error?: { code: string } });
    assert.deepEqual(
      lines.map((l) => l.error?.code ?? l.predictions?.[0]?.index ?? JSON.stringify(l)),
      new Array(CLASSIFICATIONS).fill(KITTEN),
      'every file answered once, correctly',
    );
    assert.equal(code, 0);
    assert.match(classify.stdout, /broker lost: resending/, 'the client noticed the cut (by its heartbeat) and resent what broker 1 held');
    assert.ok(brokers.every((b) => b.child.exitCode === null), 'both brokers still run: one was only cut off');
    await lab.restore(b1);
  });
});
