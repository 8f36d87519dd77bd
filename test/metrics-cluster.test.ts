import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { inferService, type InferHeader } from '../shared/infer-messages.ts';
import { decodeReply, encodeHeader } from '../shared/messages.ts';
import { METRICS, RELAYED_METRICS } from '../shared/metrics.ts';
import { MetricsServer } from '../shared/metrics-server.ts';
import { addModelVersion } from '../shared/model-exchange/model-writer.ts';
import { image, modelFile, noiseBytes } from './fixtures/inference-models.ts';
import { CliProcess, spawnWorker, startBroker, tempDir } from './helpers/cluster.ts';
import { errorCode } from './helpers/error-code.ts';
import { scrape } from './helpers/prometheus-scrape.ts';
import { rm } from 'node:fs/promises';

const SERVICE = { service: 'classify.mnist' };
const MODEL = { model: 'mnist', version: '1' };

/** A port free right now, for a child process's --metrics-port (the child cannot tell us one it picked). */
async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('cluster metrics (the broker shows the whole cluster, workers relayed in heartbeats)', function () {
  let models: string;
  let broker: Broker;
  let server: MetricsServer;
  let url: string;
  let client: ZerveClient;
  let worker: CliProcess;
  let workerPort: number;

  before(async () => {
    models = (await tempDir('zerve-metrics-models-')).path;
    await addModelVersion({ models, name: 'mnist', file: modelFile('mnist'), logits: true });
  });

  after(async () => {
    await rm(models, { recursive: true, force: true });
  });

  beforeEach(async () => {
    broker = await startBroker({ defaultDeadlineMs: 15_000 });
    server = new MetricsServer({ metricsPort: 0 }, [broker.metrics.registry]);
    url = await server.start();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 15_000 });
    workerPort = await freePort();
    worker = await spawnWorker(broker, ['inference', '--models', models, '--metrics-interval-ms', '200', '--metrics-port', String(workerPort)], (w) =>
      w.services.includes(SERVICE.service),
    );
  });

  afterEach(async () => {
    await client.close();
    await worker.kill();
    await server.close();
    await broker.close();
  });

  /** Classifies `ok` digits and `bad` undecodable images; resolves once every answer is in. */
  async function traffic(ok: number, bad: number): Promise<void> {
    // The same image each time: skip the result cache, so that every one is an inference.
    const good = Array.from({ length: ok }, () => client.classify('mnist', image('digit.png'), { cache: false }));
    const broken = Array.from({ length: bad }, () => errorCode(client.classify('mnist', noiseBytes())));
    const [replies, codes] = await Promise.all([Promise.all(good), Promise.all(broken)]);
    assert.ok(replies.every((r) => r.predictions[0]!.label === '8'));
    assert.deepEqual(codes, Array(bad).fill('BAD_IMAGE'));
  }

  /** The next metrics heartbeat: sent after every reply already in, so it counts them all (one socket, in order). */
  const nextSnapshot = () => once(broker.metrics.relay, 'snapshot');

  it('counts exactly the requests sent, by service and code, with the workers inferences relayed', async () => {
    await traffic(10, 2);
    await nextSnapshot();
    const m = await scrape(url);
    assert.equal(m.value(METRICS.requestTotal.name, { ...SERVICE, code: 'OK' }), 10);
    assert.equal(m.value(METRICS.requestTotal.name, { ...SERVICE, code: 'BAD_IMAGE' }), 2);
    assert.equal(m.count(METRICS.requestDuration.name, SERVICE), 12);
    assert.equal(m.count(METRICS.queueDuration.name, SERVICE), 12);
    // Relayed from the worker process: only the 10 that decoded reached onnxruntime.
    assert.equal(m.value(METRICS.inferenceTotal.name, MODEL), 10);
    assert.equal(m.count(METRICS.inferenceDuration.name, MODEL), 10);
    assert.equal(m.count(METRICS.decodeDuration.name, MODEL), 10);
    assert.equal(m.value(`${METRICS.inferenceDuration.name}_bucket`, { ...MODEL, le: '+Inf' }), 10);
    assert.equal(m.value(METRICS.workers.name, SERVICE), 1);
    assert.equal(m.value(METRICS.workerCapacity.name, SERVICE), 2);
    assert.equal(m.value(METRICS.queueDepth.name, SERVICE), 0);
    assert.equal(m.value(METRICS.inflight.name, SERVICE), 0);
    assert.equal(m.value(METRICS.workerLost.name), 0);
    // The web app's HTTP series and zerve up's autoscaler series are not the broker's.
    const notTheBrokers = new Set([METRICS.httpRequestDuration, METRICS.autoscaleDecisions, METRICS.workersDesired]);
    for (const spec of [...Object.values(METRICS).filter((s) => !notTheBrokers.has(s)), ...RELAYED_METRICS]) {
      assert.ok(m.types.has(spec.name), `${spec.name} on the broker's /metrics`);
    }
    assert.ok(m.types.has('process_cpu_user_seconds_total'), 'default process metrics');

    // Through the result cache: the first is a miss (the answers above were not stored), the second a hit.
    for (const expected of [undefined, true]) assert.equal((await client.classify('mnist', image('digit.png'))).cached, expected);
    await nextSnapshot();
    const cached = await scrape(url);
    assert.equal(cached.value(METRICS.resultCache.name, { ...MODEL, result: 'miss' }), 1);
    assert.equal(cached.value(METRICS.resultCache.name, { ...MODEL, result: 'hit' }), 1);
    assert.equal(cached.value(METRICS.inferenceTotal.name, MODEL), 11, 'a cached answer is not an inference');
  });

  it('counts the inferences of infer.<model> (the /v2 routes): every row of a batch, one session and decode time per request', async () => {
    const infer = (header: InferHeader, frames: Buffer[]) => client.request(inferService('mnist'), [encodeHeader(header), ...frames]);
    await infer({ op: 'images' }, [image('digit.png'), image('digit.png'), image('digit.png')]);
    await infer({ op: 'tensor', datatype: 'FP32', shape: [1, 1, 28, 28] }, [Buffer.alloc(4 * 28 * 28)]);
    assert.equal(await errorCode(infer({ op: 'images' }, [noiseBytes()]).then((reply) => decodeReply(reply[0]))), 'BAD_IMAGE');
    await nextSnapshot();
    const m = await scrape(url);
    assert.equal(m.value(METRICS.inferenceTotal.name, MODEL), 4, '3 image rows and 1 tensor row; the undecodable image is none');
    assert.equal(m.count(METRICS.inferenceDuration.name, MODEL), 2);
    assert.equal(m.count(METRICS.decodeDuration.name, MODEL), 1, 'a ready tensor is not decoded');
    const infers = { service: inferService('mnist') };
    assert.equal(m.value(METRICS.requestTotal.name, { ...infers, code: 'OK' }), 2);
    assert.equal(m.value(METRICS.requestTotal.name, { ...infers, code: 'BAD_IMAGE' }), 1);
  });

  it("keeps a departed worker's counters in the cluster sums", async () => {
    await traffic(3, 0);
    await nextSnapshot();
    const removed = once(broker, 'worker-removed');
    await worker.kill('SIGTERM'); // graceful: DISCONNECT, so not counted as lost
    await removed;
    const m = await scrape(url);
    assert.equal(m.value(METRICS.inferenceTotal.name, MODEL), 3);
    assert.equal(m.value(METRICS.requestTotal.name, { ...SERVICE, code: 'OK' }), 3);
    assert.equal(m.value(METRICS.workers.name, SERVICE), 0);
    assert.equal(m.value(METRICS.workerLost.name), 0);
  });

  it("serves a worker's own /metrics and /healthz on --metrics-port", async () => {
    await traffic(2, 1);
    const base = `http://127.0.0.1:${workerPort}`;
    const m = await scrape(`${base}/metrics`);
    assert.equal(m.value(METRICS.inferenceTotal.name, MODEL), 2);
    assert.equal(m.count(METRICS.decodeDuration.name, MODEL), 2);
    assert.ok(m.types.has('nodejs_eventloop_lag_seconds'));
    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });
    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
  });
});
