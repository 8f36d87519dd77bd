/**
 * Multi-host scenarios on real hosts: network namespaces joined by veth links (test/helpers/netns.ts).
 * The broker runs on the broker host with CURVE on its worker socket (it binds the host's address,
 * so secure-by-default applies); workers on hosts a and b connect over the links with their own keys.
 * The test process reaches the broker's client socket through an ipc endpoint.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ZerveClient } from '../shared/client.ts';
import { ZerveError } from '../shared/errors.ts';
import { generateKeyFiles, readPublicKey } from '../shared/curve-keys.ts';
import { jobResult, submitJob, watchJob } from '../shared/job-client.ts';
import type { JobSubmitRequest } from '../shared/jobs.ts';
import { encodeHeader, encodeJson, type ClassifyReply, type WorkerInfo } from '../shared/messages.ts';
import { addModelVersion } from '../shared/model-exchange/model-writer.ts';
import { image, modelFile } from './fixtures/inference-models.ts';
import { TEST_ENV, runCli, type CliProcess } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';
import { NetnsLab, skipUnlessNetns, type NetnsHost } from './helpers/netns.ts';

const BACKEND_PORT = 5556;
/**
 * Heartbeats of the lab's processes: fast, but slower than the other cluster tests' 200 ms, so that a
 * worker on a 2-core machine loaded by other work is not taken for dead.
 */
const LAB_HEARTBEAT_MS = 500;
const LAB_ENV: NodeJS.ProcessEnv = { ...TEST_ENV, ZERVE_HEARTBEAT_INTERVAL_MS: String(LAB_HEARTBEAT_MS) };

interface LogLine {
  msg: string;
  [key: string]: unknown;
}

function logLines(process: CliProcess): LogLine[] {
  return process.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}


describe('multi-host cluster (network namespaces, CURVE)', function () {
  this.timeout(180_000);
  let lab: NetnsLab;
  let keys: string;
  let allowed: string;
  let a: NetnsHost;
  let b: NetnsHost;
  let client: ZerveClient;
  let broker: CliProcess;
  let started: CliProcess[] = [];
  const key = (name: string) => join(keys, `${name}.key`);

  before(async function () {
    skipUnlessNetns(this);
    lab = await NetnsLab.create(['a', 'b']);
    [a, b] = [lab.host('a'), lab.host('b')];
    keys = join(lab.dir, 'keys');
    allowed = join(lab.dir, 'authorized-workers');
    for (const name of ['broker', 'a', 'b', 'stranger']) await generateKeyFiles(name, keys);
    for (const host of [a, b]) {
      await addModelVersion({ models: host.models, name: 'squeezenet', file: modelFile('squeezenet'), labels: modelFile('squeezenet', 'labels.txt'), channels: 'bgr' });
    }
  });

  after(async () => {
    await lab?.close();
  });

  beforeEach(async () => {
    await rm(allowed, { recursive: true, force: true });
    await mkdir(allowed);
    for (const name of ['a', 'b']) await copyFile(join(keys, `${name}.pub`), join(allowed, `${name}.pub`));
    broker = startBroker();
    client = new ZerveClient({ broker: lab.ipc('frontend'), timeoutMs: 20_000 });
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') process.stderr.write(`broker output:\n${broker.stdout.slice(-3000)}\n${broker.stderr.slice(-3000)}\n`);
    await client.close();
    await Promise.all(started.map((p) => p.kill()));
    started = [];
  });

  function spawn(host: NetnsHost, args: string[], env: NodeJS.ProcessEnv = LAB_ENV): CliProcess {
    const p = lab.spawn(host, args, env);
    started.push(p);
    return p;
  }

  function startBroker(): CliProcess {
    const args = ['broker', '--frontend', lab.ipc('frontend'), '--backend', lab.tcp(lab.broker, BACKEND_PORT), '--curve-key', key('broker'), '--authorized-workers', allowed];
    return spawn(lab.broker, args);
  }

  /** `zerve worker KIND` on `host`, connecting with `keyName`'s key pair ('' for no key). */
  function worker(host: NetnsHost, kind: string, keyName: string, ...extra: string[]): CliProcess {
    const curve = keyName === '' ? [] : ['--curve-key', key(keyName), '--broker-key', join(keys, 'broker.pub')];
    return spawn(host, ['worker', kind, '--connect', lab.tcp(lab.broker, BACKEND_PORT), ...curve, ...extra]);
  }

  const inference = (host: NetnsHost, keyName = host.name) => worker(host, 'inference', keyName, '--models', host.models);

  async function waitForWorkers(predicate: (workers: WorkerInfo[]) => boolean, what: string, timeoutMs = 60_000): Promise<WorkerInfo[]> {
    let workers: WorkerInfo[] = [];
    await eventually(
      what,
      async () => {
        try {
          return predicate((workers = await client.workers({ timeoutMs: 3_000 })));
        } catch (err) {
          // A broker process starting on a loaded machine may take a while to answer.
          if (err instanceof ZerveError && err.code === 'TIMEOUT') return false;
          throw err;
        }
      },
      timeoutMs,
    );
    return workers;
  }

  const serving = (host: NetnsHost) => (w: WorkerInfo) => w.host === host.ns && w.services.includes('classify.squeezenet');
  const classifyKitten = () => client.classify('squeezenet', image('kitten.png'));

  it('serves one model from inference workers on two hosts, spreading requests over both', async () => {
    inference(a);
    inference(b);
    await waitForWorkers((ws) => ws.some(serving(a)) && ws.some(serving(b)), 'both hosts');
    const busyHosts = new Set<string>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const w of await client.workers({ timeoutMs: 5_000 })) if (w.inFlight > 0) busyHosts.add(w.host);
        await sleep(20);
      }
    })();
    const replies = await Promise.all(Array.from({ length: 40 }, classifyKitten));
    sampling = false;
    await sampler;
    assert.deepEqual(replies.map((r) => r.predictions[0]!.index), Array(40).fill(281));
    assert.deepEqual([...busyHosts].sort(), [a.ns, b.ns].sort(), 'both hosts had requests in flight');
  });

  it("answers all 100 requests in flight when host A's link is cut, and host A's worker rejoins when it returns", async () => {
    inference(a);
    inference(b);
    const [before] = (await waitForWorkers((ws) => ws.some(serving(a)) && ws.some(serving(b)), 'both hosts')).filter(serving(a));
    const replies = Promise.all(Array.from({ length: 100 }, classifyKitten));
    await waitForWorkers((ws) => ws.some((w) => serving(a)(w) && w.inFlight > 0), 'host A to hold requests');
    await lab.cut(a);
    try {
      const all = await replies;
      assert.deepEqual(all.map((r) => r.predictions[0]!.index), Array(100).fill(281));
      // Host A's process has two connections (inference, and its model holder): both expire with the link.
      // The broker's log arrives through a pipe, possibly after the replies.
      const removed = await eventually("the broker to log host A's requeuing removal", () => {
        const lines = logLines(broker).filter((l) => l.msg === 'worker removed' && l.host === a.ns);
        return lines.some((l) => Number(l.requeued) >= 1) ? lines : false;
      }, 30_000);
      assert.ok(removed.length > 0 && removed.every((l) => l.reason === 'heartbeat expired'), JSON.stringify(removed));
      assert.ok(removed.some((l) => Number(l.requeued) >= 1), `host A's requests were requeued: ${JSON.stringify(removed)}`);
    } finally {
      await lab.restore(a);
    }
    const [after] = (await waitForWorkers((ws) => ws.some(serving(a)), "host A's worker to rejoin")).filter(serving(a));
    assert.equal(after!.pid, before!.pid, 'the same worker process rejoined by itself');
    assert.notEqual(after!.id, before!.id, 'on a new connection');
    assert.deepEqual((await Promise.all(Array.from({ length: 10 }, classifyKitten))).map((r) => r.predictions[0]!.index), Array(10).fill(281));
  });

  it('refuses a worker with no key, one with a wrong key and one whose key was revoked: none gets a request, and the broker logs each', async () => {
    const good = inference(a);
    const revoked = inference(b);
    await waitForWorkers((ws) => ws.some(serving(a)) && ws.some(serving(b)), 'both keyed workers');
    const noKey = inference(b, '');
    const wrongKey = inference(b, 'stranger');
    await eventually('the refusals to be logged', () => {
      const refused = logLines(broker).filter((l) => l.msg === 'peer refused');
      return refused.some((l) => /handshake failed/.test(String(l.reason))) && refused.some((l) => l.address === b.address && l.reason === 'public key not in the allowlist');
    });
    await rm(join(allowed, 'b.pub'));
    await waitForWorkers((ws) => !ws.some(serving(b)), "host B's revoked worker to be dropped");
    // The broker's log arrives through a pipe, possibly after the worker list that no longer shows it.
    await eventually("the broker to log the revoked worker's removal", () =>
      logLines(broker).some((l) => l.msg === 'worker removed' && l.host === b.ns && l.reason === 'key revoked' && l.pid === revoked.pid),
    );

    const replies = await Promise.all(Array.from({ length: 30 }, classifyKitten));
    assert.deepEqual(replies.map((r) => r.predictions[0]!.index), Array(30).fill(281));
    const workers = (await client.workers()).filter((w) => w.kind === 'inference');
    assert.deepEqual(workers.map((w) => w.pid), [good.pid], 'only the keyed worker on host A is registered, so only it got requests');
    for (const p of [noKey, wrongKey, revoked]) assert.equal(p.child.exitCode, null, 'refused workers keep retrying');
    const bKey = readPublicKey(join(keys, 'b.pub'));
    await eventually("the revoked key's reconnection to be refused", () => logLines(broker).some((l) => l.msg === 'peer refused' && l.publicKey === bKey && l.address === b.address));
  });

  it('gets every worker on every host back after a broker restart, and a job ticket taken before it resolves', async () => {
    // The jobs service runs on the broker host with the broker's own key (admitted, as `zerve up` does).
    const jobs = spawn(lab.broker, ['worker', 'jobs', '--connect', lab.tcp(lab.broker, BACKEND_PORT), '--broker', lab.ipc('frontend'), '--data', lab.broker.data, '--curve-key', key('broker'), '--broker-key', key('broker')]);
    const workers = [jobs, inference(a), inference(b), worker(b, 'echo', 'b')];
    // Each inference process also has its model holder's connection (kind `models`), not counted here.
    const kinds = (ws: WorkerInfo[]) => ws.filter((w) => w.kind !== 'models').map((w) => `${w.host}/${w.kind}`).sort();
    const everyone = [`${a.ns}/inference`, `${b.ns}/inference`, `${b.ns}/echo`, `${lab.broker.ns}/jobs`].sort();
    await waitForWorkers((ws) => JSON.stringify(kinds(ws)) === JSON.stringify(everyone), 'every worker');

    // A job still running when the broker dies: its reply is lost with the broker, so the jobs service tries again.
    const slow: JobSubmitRequest = { service: 'echo', timeoutMs: 3000 };
    const slowTicket = await submitJob(client, [encodeJson(slow), encodeJson({ delayMs: 1500, ticket: 'before the restart' })]);
    const classifyTicket = await submitJob(client, [encodeJson({ service: 'classify.squeezenet', timeoutMs: 5000 } satisfies JobSubmitRequest), encodeHeader({}), image('kitten.png')]);
    await broker.kill('SIGKILL');
    broker = startBroker();

    const back = await waitForWorkers((ws) => JSON.stringify(kinds(ws)) === JSON.stringify(everyone), 'every worker to rejoin the new broker');
    // An inference process rejoins with two connections (inference, and its model holder): count processes.
    assert.deepEqual([...new Set(back.map((w) => w.pid))].sort(), workers.map((w) => w.pid).sort(), 'the same processes, none restarted');
    const slowStatus = await watchJob(client, slowTicket.id);
    assert.deepEqual(jobResult(slowStatus), { delayMs: 1500, ticket: 'before the restart' });
    assert.equal(jobResult<ClassifyReply>(await watchJob(client, classifyTicket.id)).predictions[0]!.index, 281);
  });

  it('refuses to start a broker whose worker socket binds a host address without CURVE, and shows --insecure in zerve status', async () => {
    const args = ['broker', '--frontend', lab.ipc('open-frontend'), '--backend', lab.tcp(lab.broker, BACKEND_PORT + 1)];
    const refused = await lab.run(lab.broker, args);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /BAD_CONFIG: refusing to start: the worker socket tcp:\/\/10\.231\.\d+\.1:5557 is reachable from other hosts and has no CURVE key/);

    const open = spawn(lab.broker, [...args, '--insecure']);
    await eventually('the insecure warning', () => logLines(open).some((l) => /^INSECURE/.test(l.msg)));
    const status = await runCli(['status', '--broker', lab.ipc('open-frontend'), '--timeout-ms', '20000']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /WARNING: the broker runs with --insecure/);
  });
});
