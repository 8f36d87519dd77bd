import assert from 'node:assert/strict';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { ALL_BROKERS, type ClusterHistory, type ClusterSnapshot } from '../shared/cluster-view.ts';
import { ECHO_SERVICE } from '../shared/protocol.ts';
import { ClusterMonitor } from '../webapp/cluster-monitor.ts';
import { WebApp } from '../webapp/web-app.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';
import { CliProcess, spawnWorker, startBroker } from './helpers/cluster.ts';
import { rejectsWith } from './helpers/error-code.ts';
import { eventually } from './helpers/eventually.ts';
import { scrape } from './helpers/prometheus-scrape.ts';
import { generateKeyFiles } from '../shared/curve-keys.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Reads a Server-Sent Events stream and keeps its `snapshot` events, newest last. */
class SnapshotStream {
  readonly snapshots: ClusterSnapshot[] = [];
  private readonly controller = new AbortController();
  private waiters: (() => void)[] = [];

  constructor(url: string) {
    void this.read(url).catch(() => undefined);
  }

  /** Resolves with the first snapshot (from now on) that `predicate` accepts. */
  next(predicate: (s: ClusterSnapshot) => boolean): Promise<ClusterSnapshot> {
    return new Promise((resolve) => {
      const check = () => {
        const found = this.snapshots.at(-1);
        if (found && predicate(found)) {
          this.waiters = this.waiters.filter((w) => w !== check);
          resolve(found);
        }
      };
      this.waiters.push(check);
      check();
    });
  }

  close(): void {
    this.controller.abort();
  }

  private async read(url: string): Promise<void> {
    const response = await fetch(url, { signal: this.controller.signal });
    assert.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    let buffered = '';
    for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let end: number;
      while ((end = buffered.indexOf('\n\n')) >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const data = /^event: snapshot\ndata: (.*)$/s.exec(event)?.[1];
        if (data === undefined) continue;
        this.snapshots.push(JSON.parse(data) as ClusterSnapshot);
        for (const waiter of [...this.waiters]) waiter();
      }
    }
  }
}

describe('cluster page data (/cluster/*) and the web app /metrics beside the broker', function () {
  this.timeout(60_000);
  let broker: Broker;
  let web: WebApp;
  let client: ZerveClient;
  let workers: CliProcess[];
  let stream: SnapshotStream | undefined;

  // One broker, web app and worker pair for the whole suite: each test only adds requests and workers.
  before(async () => {
    // A short default deadline: a request for a service nobody offers is answered NO_WORKERS quickly.
    broker = await startBroker({ defaultDeadlineMs: 1000 });
    web = new WebApp({ broker: broker.frontendEndpoint, http: 0, clusterPollMs: 200 }, testLogger);
    web.metrics.include(broker.metrics.registry);
    await web.start();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 10_000 });
    workers = await Promise.all([spawnWorker(broker, ['echo']), spawnWorker(broker, ['echo'])]);
  });
  after(async () => {
    stream?.close();
    await client?.close();
    await web?.close();
    for (const w of workers ?? []) await w.kill();
    await broker?.close();
  });
  afterEach(() => stream?.close());

  const get = async <T>(path: string): Promise<{ status: number; body: T }> => {
    const response = await fetch(new URL(path, web.url));
    return { status: response.status, body: (await response.json()) as T };
  };

  it("serves the broker's cluster series on the web app's own /metrics", async () => {
    for (let i = 0; i < 20; i++) await client.request(ECHO_SERVICE, [Buffer.from(`ping ${i}`)]);
    const m = await scrape(new URL('/metrics', web.url).href);
    assert.ok(m.value('zerve_request_total', { service: ECHO_SERVICE, code: 'OK' }) >= 20);
    assert.ok(m.count('zerve_request_duration_seconds', { service: ECHO_SERVICE }) >= 20);
    assert.equal(m.value('zerve_workers', { service: ECHO_SERVICE }), 2);
    assert.ok(m.types.has('zerve_http_request_duration_seconds'), "the web app's own series are still there");
  });

  it('shows workers with pid, capacity and in flight, and per-service rates, latency and outcomes', async () => {
    await Promise.all(Array.from({ length: 50 }, (_, i) => client.request(ECHO_SERVICE, [Buffer.from(`load ${i}`)])));
    const snapshot = await eventually('a snapshot with the requests counted', async () => {
      const { body } = await get<ClusterSnapshot>('/cluster/snapshot');
      const row = body.services.find((s) => s.broker === ALL_BROKERS && s.name === ECHO_SERVICE);
      return row && row.outcomes.OK! >= 70 && row.rps > 0 ? body : undefined;
    });
    const row = snapshot.services.find((s) => s.broker === ALL_BROKERS && s.name === ECHO_SERVICE)!;
    assert.equal(row.workers, 2);
    assert.ok(row.p50Ms !== null && row.p99Ms !== null && row.p99Ms >= row.p50Ms);
    assert.ok(row.queueP50Ms !== null);
    assert.equal(row.errorsPerS, 0);
    assert.deepEqual(snapshot.brokers.map((b) => [b.endpoint, b.up]), [[broker.frontendEndpoint, true]]);
    assert.deepEqual(snapshot.workers.map((w) => w.pid).sort(), workers.map((w) => w.pid).sort());
    for (const w of snapshot.workers) {
      assert.deepEqual([w.kind, w.services], ['echo', [ECHO_SERVICE]]);
      assert.equal(w.broker, broker.frontendEndpoint);
      assert.ok(w.capacity >= 1 && w.lastSeenMs >= 0);
    }
    const total = snapshot.totals.find((t) => t.broker === ALL_BROKERS)!;
    assert.equal(total.workers, 2);
    const { body: history } = await get<ClusterHistory>('/cluster/history?key=*');
    assert.ok(history.at.length > 0 && history.at.length === history.rps.length);
    assert.ok(history.rps.some((r) => r > 0), 'the history saw the requests');
  });

  it('counts errors by code', async () => {
    await rejectsWith(client.requestJson('nobody.here', [Buffer.from('x')], { timeoutMs: 10_000, retries: 0 }), 'NO_WORKERS');
    const row = await eventually('the NO_WORKERS answer counted', async () => {
      const { body } = await get<ClusterSnapshot>('/cluster/snapshot');
      return body.services.find((s) => s.broker === ALL_BROKERS && s.name === 'nobody.here' && s.outcomes.NO_WORKERS === 1);
    });
    assert.ok(row.errorsPerS > 0);
  });

  it('streams snapshots: a killed worker leaves, a new one appears', async () => {
    stream = new SnapshotStream(new URL('/cluster/events', web.url).href);
    const victim = workers[0]!;
    await stream.next((s) => s.workers.some((w) => w.pid === victim.pid));
    await victim.kill('SIGKILL');
    await stream.next((s) => !s.workers.some((w) => w.pid === victim.pid));
    const added = await spawnWorker(broker, ['echo']);
    workers.push(added);
    const seen = await stream.next((s) => s.workers.some((w) => w.pid === added.pid));
    assert.equal(seen.workers.length, 2);
  });

  it('answers a history it does not keep with NOT_FOUND, and one not named with BAD_REQUEST', async () => {
    const missing = await get<{ error: { code: string } }>('/cluster/history?key=service:never-seen');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'NOT_FOUND');
    const unnamed = await get<{ error: { code: string } }>('/cluster/history');
    assert.equal(unnamed.status, 400);
    assert.equal(unnamed.body.error.code, 'BAD_REQUEST');
  });
});

describe('cluster monitor over several brokers', function () {
  this.timeout(60_000);
  let brokers: Broker[];
  let clients: ZerveClient[];
  let workers: CliProcess[];
  let monitor: ClusterMonitor;

  beforeEach(async () => {
    brokers = await Promise.all([startBroker(), startBroker()]);
    clients = brokers.map((b) => new ZerveClient({ broker: b.frontendEndpoint, timeoutMs: 10_000 }));
    workers = await Promise.all(brokers.map((b) => spawnWorker(b, ['echo'])));
    monitor = new ClusterMonitor(brokers.map((b, i) => ({ endpoint: b.frontendEndpoint, client: clients[i]! })), { pollMs: 100 }, testLogger);
  });
  afterEach(async () => {
    monitor?.close();
    for (const c of clients ?? []) await c.close();
    for (const w of workers ?? []) await w.kill();
    for (const b of brokers ?? []) await b.close();
  });

  it('keys everything by broker endpoint and sums the brokers under *', async () => {
    for (let i = 0; i < 3; i++) await clients[0]!.request(ECHO_SERVICE, [Buffer.from('a')]);
    for (let i = 0; i < 5; i++) await clients[1]!.request(ECHO_SERVICE, [Buffer.from('b')]);
    monitor.start();
    const [a, b] = brokers.map((x) => x.frontendEndpoint) as [string, string];
    const snapshot = await new Promise<ClusterSnapshot>((resolve) => monitor.on('snapshot', resolve));
    const okAt = (broker: string) => snapshot.services.find((s) => s.broker === broker && s.name === ECHO_SERVICE)?.outcomes.OK;
    assert.deepEqual([okAt(a), okAt(b), okAt(ALL_BROKERS)], [3, 5, 8]);
    assert.deepEqual(snapshot.totals.map((t) => [t.broker, t.workers]), [[ALL_BROKERS, 2], [a, 1], [b, 1]]);
    assert.deepEqual(snapshot.workers.map((w) => w.broker).sort(), [a, b].sort());
    assert.ok(monitor.history(a) && monitor.history(b) && monitor.history(ALL_BROKERS));
  });

  it('shows a broker that does not answer as down, with the error code, and keeps polling the others', async () => {
    await brokers[1]!.close();
    monitor.start();
    const snapshot = await new Promise<ClusterSnapshot>((resolve) => monitor.on('snapshot', resolve));
    assert.deepEqual(snapshot.brokers.map((b) => b.up), [true, false]);
    assert.equal(typeof snapshot.brokers[1]!.error, 'string');
    assert.deepEqual(snapshot.workers.map((w) => w.pid), [workers[0]!.pid]);
  });

  it('polls each broker apart when the web app is given several, comma-separated', async () => {
    const [a, b] = brokers.map((x) => x.frontendEndpoint) as [string, string];
    const web = new WebApp({ broker: `${a},${b}`, http: 0, clusterPollMs: 100 }, testLogger);
    try {
      await web.start();
      const snapshot = await eventually('both brokers answering', async () => {
        const body = (await (await fetch(new URL('/cluster/snapshot', web.url))).json()) as ClusterSnapshot;
        return body.brokers.every((x) => x.up) && body.workers.length === 2 ? body : undefined;
      });
      assert.deepEqual(snapshot.brokers.map((x) => x.endpoint), [a, b]);
      assert.deepEqual(snapshot.workers.map((w) => [w.broker, w.pid]).sort(), [[a, workers[0]!.pid], [b, workers[1]!.pid]].sort());
    } finally {
      await web.close();
    }
  });

  it('polls each CURVE broker with its own key when --broker-key names one per broker', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zerve-cluster-keys-'));
    const curveBrokers: Broker[] = [];
    let web: WebApp | undefined;
    try {
      const keys = [await generateKeyFiles('one', dir), await generateKeyFiles('two', dir)];
      for (const key of keys) curveBrokers.push(await startBroker({ curveKey: key.keyFile, clientAuth: 'curve' }));
      const endpoints = curveBrokers.map((x) => x.frontendEndpoint);
      web = new WebApp({ broker: endpoints.join(','), brokerKey: keys.map((k) => k.pubFile).join(','), clientAuth: 'curve', http: 0, clusterPollMs: 100 }, testLogger);
      await web.start();
      const snapshot = await eventually('both CURVE brokers answering', async () => {
        const body = (await (await fetch(new URL('/cluster/snapshot', web!.url))).json()) as ClusterSnapshot;
        return body.brokers.every((x) => x.up) ? body : undefined;
      });
      assert.deepEqual(snapshot.brokers.map((x) => x.endpoint), endpoints);
    } finally {
      await web?.close();
      for (const broker of curveBrokers) await broker.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
