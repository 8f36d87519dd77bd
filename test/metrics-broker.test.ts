import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as zmq from 'zeromq';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { ERROR_CODES, ZerveError, type ErrorCode } from '../shared/errors.ts';
import { JOBS_SUBMIT, JOBS_STATUS, type JobStatus, type JobTicket } from '../shared/jobs.ts';
import { logger } from '../shared/logger.ts';
import { encodeError, encodeJson } from '../shared/messages.ts';
import { METRICS } from '../shared/metrics.ts';
import { MetricsServer } from '../shared/metrics-server.ts';
import { MDPW02, WorkerCommand, encodeMetricsHeartbeat, encodeReady, parseWorkerMessage, type MetricSeriesWire } from '../shared/protocol.ts';
import { replyOutcome } from '../shared/reply-outcome.ts';
import { createEchoWorker } from '../workers/echo/echo-worker.ts';
import { JobsWorker } from '../workers/jobs/jobs-worker.ts';
import { errorCode } from './helpers/error-code.ts';
import { TEST_HEARTBEAT_MS, nextWorker, startBroker, tempDir } from './helpers/cluster.ts';
import { scrape } from './helpers/prometheus-scrape.ts';

// Quiet by default; ZERVE_LOG_LEVEL=debug npx mocha ... shows the broker's logs.
if (process.env.ZERVE_LOG_LEVEL === undefined) logger.level = 'silent';
const HEARTBEAT = Buffer.from([WorkerCommand.HEARTBEAT]);

describe('broker metrics', () => {
  let broker: Broker;
  let server: MetricsServer;
  let url: string;
  let client: ZerveClient;
  const sockets: zmq.Dealer[] = [];

  beforeEach(async () => {
    broker = await startBroker({ defaultDeadlineMs: 10_000, maxQueuedPerService: 1 });
    server = new MetricsServer({ metricsPort: 0 }, [broker.metrics.registry]);
    url = await server.start();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 10_000 });
  });

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.close();
    await client.close();
    await server.close();
    await broker.close();
  });

  /** A bare MDP/0.2 worker on a DEALER socket, registered with Zerve's READY extension. */
  async function rawWorker(services: string[]): Promise<zmq.Dealer> {
    const socket = new zmq.Dealer({ linger: 0 });
    sockets.push(socket);
    socket.connect(broker.backendEndpoint);
    const registered = nextWorker(broker, (w) => w.services[0] === services[0]);
    await socket.send(encodeReady({ services, capacity: 1, kind: 'raw', host: 'test', pid: 1, idempotent: services }));
    await registered;
    return socket;
  }

  it('reads the outcome of every error code from the reply body, and OK from anything else', () => {
    for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
      assert.equal(replyOutcome(encodeError(new ZerveError(code, 'with "quotes" and a message'))), code);
    }
    assert.equal(replyOutcome(encodeJson({ model: 'm', predictions: [] })), 'OK');
    assert.equal(replyOutcome(Buffer.from('{"error":{"code":"NOT_IN_THE_CATALOG","message":""}}')), 'INTERNAL');
    assert.equal(replyOutcome(Buffer.alloc(0)), 'OK');
    assert.equal(replyOutcome(undefined), 'OK');
  });

  it('counts the answers the broker gives itself: NO_WORKERS, OVERLOADED, and a lost worker with its requeued request', async () => {
    const waiting = errorCode(client.requestJson('nobody', [encodeJson({ deadlineMs: 300 })]));
    await new Promise<void>((resolve) => {
      const check = async () => ((await client.services()).some((s) => s.name === 'nobody' && s.queued === 1) ? resolve() : setTimeout(check, 10));
      void check();
    });
    assert.equal(await errorCode(client.requestJson('nobody', [])), 'OVERLOADED'); // the queue holds 1
    assert.equal(await waiting, 'NO_WORKERS');

    // A worker that takes an echo request and goes silent: dropped after the liveness period.
    const worker = await rawWorker(['echo']);
    const lost = errorCode(client.requestJson('echo', [encodeJson({ deadlineMs: 8 * TEST_HEARTBEAT_MS })]));
    await worker.receive(); // the REQUEST
    const removed = once(broker, 'worker-removed');
    worker.close();
    await removed;
    assert.equal(await lost, 'NO_WORKERS'); // requeued, and nobody else offers echo

    const m = await scrape(url);
    assert.equal(m.value(METRICS.requestTotal.name, { service: 'nobody', code: 'NO_WORKERS' }), 1);
    assert.equal(m.value(METRICS.requestTotal.name, { service: 'nobody', code: 'OVERLOADED' }), 1);
    assert.equal(m.value(METRICS.requestTotal.name, { service: 'echo', code: 'NO_WORKERS' }), 1);
    assert.equal(m.count(METRICS.requestDuration.name, { service: 'nobody' }), 2);
    assert.equal(m.count(METRICS.queueDuration.name, { service: 'echo' }), 1, 'dispatched once; the requeue is not a second wait');
    assert.equal(m.value(METRICS.overloaded.name), 1);
    assert.equal(m.value(METRICS.workerLost.name), 1);
    assert.equal(m.value(METRICS.workerRequeues.name), 1);
  });

  it('ignores metrics frames it cannot read and series that do not fit the catalog, and keeps routing', async () => {
    const worker = await rawWorker(['echo']);
    const good: MetricSeriesWire = [METRICS.inferenceTotal.name, ['m', '1'], 5];
    const snapshot = once(broker.metrics.relay, 'snapshot');
    await worker.send([MDPW02, HEARTBEAT, Buffer.from('not json')]);
    await worker.send([MDPW02, HEARTBEAT, Buffer.from('["",[]]')]); // no instance name
    await worker.send(
      encodeMetricsHeartbeat({
        instance: 'raw-1',
        series: [
          good,
          ['zerve_not_a_metric', [], 1],
          [METRICS.inferenceTotal.name, ['only-one-label'], 1],
          [METRICS.inferenceTotal.name, ['m', '2'], -1],
          [METRICS.inferenceDuration.name, ['m', '1'], 1, 0.1, [1]], // wrong bucket count
          'not a series' as unknown as MetricSeriesWire,
        ],
      }),
    );
    await snapshot;
    const m = await scrape(url);
    assert.equal(m.value(METRICS.inferenceTotal.name, { model: 'm', version: '1' }), 5);
    assert.equal(m.samples.filter((s) => s.name === METRICS.inferenceTotal.name).length, 1);
    assert.ok(!m.samples.some((s) => s.name.startsWith(METRICS.inferenceDuration.name) && s.labels.model === 'm'));
    assert.equal((await client.services()).find((s) => s.name === 'echo')?.workers, 1, 'the worker is still registered');
  });

  it('counts a worker process once across reconnects: a newer snapshot replaces the older', async () => {
    const first = await rawWorker(['echo']);
    let snapshot = once(broker.metrics.relay, 'snapshot');
    await first.send(encodeMetricsHeartbeat({ instance: 'proc-a', series: [[METRICS.inferenceTotal.name, ['m', '1'], 4]] }));
    await snapshot;
    // The same process on a fresh socket (as after a broker restart), its counters having gone on.
    const second = await rawWorker(['models.describe']);
    snapshot = once(broker.metrics.relay, 'snapshot');
    await second.send(encodeMetricsHeartbeat({ instance: 'proc-a', series: [[METRICS.inferenceTotal.name, ['m', '1'], 6]] }));
    await snapshot;
    assert.equal((await scrape(url)).value(METRICS.inferenceTotal.name, { model: 'm', version: '1' }), 6);
  });

  it("relays the jobs service's job counts by state, and drops a departed process's gauges", async () => {
    const data = await tempDir();
    const echo = createEchoWorker({ connect: broker.backendEndpoint, heartbeatIntervalMs: TEST_HEARTBEAT_MS });
    const jobs = new JobsWorker(
      { connect: broker.backendEndpoint, broker: broker.frontendEndpoint, data: data.path, heartbeatIntervalMs: TEST_HEARTBEAT_MS, metricsIntervalMs: TEST_HEARTBEAT_MS },
    );
    try {
      const ready = Promise.all([nextWorker(broker, (w) => w.services.includes('echo')), nextWorker(broker, (w) => w.services.includes(JOBS_SUBMIT))]);
      echo.start();
      jobs.start();
      await ready;
      const ticket = await client.requestJson<JobTicket>(JOBS_SUBMIT, [encodeJson({ service: 'echo' }), Buffer.from('hi')]);
      let status: JobStatus;
      do status = await client.requestJson<JobStatus>(JOBS_STATUS, [encodeJson({ id: ticket.id })]);
      while (status.state !== 'succeeded');
      await once(broker.metrics.relay, 'snapshot');
      let m = await scrape(url);
      assert.equal(m.value(METRICS.jobs.name, { state: 'succeeded' }), 1);
      assert.equal(m.value(METRICS.jobs.name, { state: 'queued' }), 0);
      const removed = once(broker, 'worker-removed');
      await jobs.close();
      await removed;
      m = await scrape(url);
      assert.ok(!m.samples.some((s) => s.name === METRICS.jobs.name), 'no jobs gauge once the jobs worker left');
    } finally {
      await jobs.close();
      await echo.close();
      await data.remove();
    }
  });

  it('parses the HEARTBEAT metrics frame, and a plain HEARTBEAT has none', () => {
    const frames = encodeMetricsHeartbeat({ instance: 'i', series: [] });
    const message = parseWorkerMessage(frames);
    assert.equal(message.kind, 'heartbeat');
    assert.ok(message.kind === 'heartbeat' && message.metrics?.equals(frames[2]!));
    const plain = parseWorkerMessage([MDPW02, HEARTBEAT]);
    assert.ok(plain.kind === 'heartbeat' && plain.metrics === undefined);
  });
});
