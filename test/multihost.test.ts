/**
 * Multi-host scenarios on real hosts: network namespaces joined by veth links (test/helpers/netns.ts).
 * The broker runs on the broker host; workers on hosts a and b connect over the links.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ZerveClient } from '../shared/client.ts';
import type { WorkerInfo } from '../shared/messages.ts';
import { addModelVersion } from '../workers/inference/model-writer.ts';
import { image, modelFile } from './fixtures/inference-models.ts';
import type { CliProcess } from './helpers/cluster.ts';
import { NetnsLab, skipUnlessNetns, type NetnsHost } from './helpers/netns.ts';

const BACKEND_PORT = 5556;

describe('multi-host cluster (network namespaces)', function () {
  this.timeout(60_000);
  let lab: NetnsLab;
  let client: ZerveClient;
  let broker: CliProcess | undefined;

  before(async function () {
    skipUnlessNetns(this);
    lab = await NetnsLab.create(['a', 'b']);
    for (const host of lab.workerHosts()) {
      await addModelVersion({ models: host.models, name: 'squeezenet', file: modelFile('squeezenet'), labels: modelFile('squeezenet', 'labels.txt'), channels: 'bgr' });
    }
  });

  after(async () => {
    await client?.close();
    await lab?.close();
  });

  beforeEach(async () => {
    broker = startBroker();
    client = new ZerveClient({ broker: lab.ipc('frontend'), timeoutMs: 20_000 });
  });

  afterEach(async () => {
    await client.close();
    await broker?.kill();
  });

  function startBroker(): CliProcess {
    return lab.spawn(lab.broker, ['broker', '--frontend', lab.ipc('frontend'), '--backend', lab.tcp(lab.broker, BACKEND_PORT)]);
  }

  function inferenceWorker(host: NetnsHost): CliProcess {
    return lab.spawn(host, ['worker', 'inference', '--connect', lab.tcp(lab.broker, BACKEND_PORT), '--models', host.models]);
  }

  /** Polls `mmi.workers` until `predicate` holds. */
  async function waitForWorkers(predicate: (workers: WorkerInfo[]) => boolean, what: string, timeoutMs = 30_000): Promise<WorkerInfo[]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const workers = await client.workers({ timeoutMs: 5_000 });
      if (predicate(workers)) return workers;
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(workers)}`);
      await sleep(100);
    }
  }

  const servesSqueezenet = (host: NetnsHost) => (w: WorkerInfo) => w.host === host.ns && w.services.includes('classify.squeezenet');

  it('serves one model from inference workers on two hosts, spreading requests over both', async () => {
    const [a, b] = lab.workerHosts() as [NetnsHost, NetnsHost];
    const workers = [inferenceWorker(a), inferenceWorker(b)];
    await waitForWorkers((ws) => ws.some(servesSqueezenet(a)) && ws.some(servesSqueezenet(b)), 'both hosts');
    const busyHosts = new Set<string>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const w of await client.workers({ timeoutMs: 5_000 })) if (w.inFlight > 0) busyHosts.add(w.host);
        await sleep(20);
      }
    })();
    const replies = await Promise.all(Array.from({ length: 40 }, () => client.classify('squeezenet', image('kitten.png'))));
    sampling = false;
    await sampler;
    assert.deepEqual(replies.map((r) => r.predictions[0]!.index), Array(40).fill(281));
    assert.deepEqual([...busyHosts].sort(), [a.ns, b.ns].sort(), 'both hosts had requests in flight');
    await Promise.all(workers.map((w) => w.kill()));
  });
});
