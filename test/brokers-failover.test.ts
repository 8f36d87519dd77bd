import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import type { ZerveError } from '../shared/errors.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { WorkerMetrics } from '../shared/worker-metrics.ts';
import { eventually } from './helpers/eventually.ts';
import { nextWorker, startBroker } from './helpers/cluster.ts';

const HEARTBEAT_MS = 100;

/** Holds every request until `open()`; counts what ran, and the most that ran at once. */
class Gate {
  running = 0;
  maxRunning = 0;
  handled = 0;
  private release?: () => void;
  private opened: Promise<void> = new Promise((resolve) => (this.release = resolve));

  handler = async (body: Buffer[]): Promise<Buffer[]> => {
    this.handled++;
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      await this.opened;
      return body;
    } finally {
      this.running--;
    }
  };

  open(): void {
    this.release!();
  }
}

describe('several brokers', function () {
  this.timeout(30_000);
  let b1: Broker;
  let b2: Broker;
  const closers: Array<() => Promise<unknown>> = [];

  beforeEach(async () => {
    b1 = await startBroker({ heartbeatIntervalMs: HEARTBEAT_MS });
    b2 = await startBroker({ heartbeatIntervalMs: HEARTBEAT_MS });
    closers.push(() => b1.close(), () => b2.close());
  });

  afterEach(async () => {
    // Clients and workers first (pushed last), then brokers.
    for (const close of closers.splice(0).reverse()) await close();
  });

  function worker(gate: Gate, services: string[], capacity: number, connect = `${b1.backendEndpoint},${b2.backendEndpoint}`): WorkerConnection {
    const connection = new WorkerConnection(services, gate.handler, { connect, capacity, heartbeatIntervalMs: HEARTBEAT_MS, idempotent: () => true });
    // Closed after the gate opens (closers run last first): a worker drains what it runs before closing.
    closers.push(() => connection.close(), async () => gate.open());
    connection.start();
    return connection;
  }

  function client(broker: string): ZerveClient {
    const c = new ZerveClient({ broker, timeoutMs: 20_000, heartbeatIntervalMs: HEARTBEAT_MS });
    closers.push(() => c.close());
    return c;
  }

  async function capacityOn(broker: Broker): Promise<number | undefined> {
    const c = client(broker.frontendEndpoint);
    const [info] = await c.workers();
    await c.close();
    return info?.capacity;
  }

  describe('a worker on two brokers', () => {
    it('registers on both and splits its capacity between them', async () => {
      const registered = Promise.all([nextWorker(b1), nextWorker(b2)]);
      const connection = worker(new Gate(), ['classify.split'], 5);
      const [on1, on2] = await registered;
      assert.deepEqual([on1.capacity, on2.capacity], [3, 2]);
      assert.deepEqual(connection.grants, [3, 2]);
    });

    it('moves credit to the broker that has work, and never runs more than its capacity at once', async () => {
      const gate = new Gate();
      const registered = Promise.all([nextWorker(b1), nextWorker(b2)]);
      const connection = worker(gate, ['classify.credit'], 4);
      await registered;
      const c1 = client(b1.frontendEndpoint);
      const first = Array.from({ length: 6 }, (_, i) => c1.request('classify.credit', [Buffer.from(`one-${i}`)]));
      // Broker 2 has nothing to do: its share goes to broker 1 but for one unit, kept so broker 2 can reach the worker.
      await eventually('credit moved to broker 1', async () => gate.running === 3 && connection.grants.join() === '3,1', 10_000, 20);
      assert.equal(await capacityOn(b1), 3);
      const c2 = client(b2.frontendEndpoint);
      const second = Array.from({ length: 2 }, (_, i) => c2.request('classify.credit', [Buffer.from(`two-${i}`)]));
      await eventually('broker 2 uses its unit', async () => gate.running === 4, 10_000, 20);
      gate.open();
      const replies = await Promise.all([...first, ...second]);
      assert.deepEqual(replies.map((r) => String(r[0])), [...Array.from({ length: 6 }, (_, i) => `one-${i}`), 'two-0', 'two-1']);
      assert.equal(gate.maxRunning, 4);
      assert.equal(gate.handled, 8);
    });

    it("gives a silent broker's share to the other within a liveness period, and takes it back when the broker returns", async () => {
      const registered = Promise.all([nextWorker(b1), nextWorker(b2)]);
      const connection = worker(new Gate(), ['classify.back'], 4);
      await registered;
      const { frontendEndpoint, backendEndpoint } = b2;
      const moved = once(connection, 'shares');
      await b2.close();
      assert.deepEqual((await moved)[0], [4, 1], 'broker 1 has the whole capacity; broker 2 gets one unit to register with');
      await eventually('broker 1 has the whole capacity', async () => (await capacityOn(b1)) === 4, 10_000);
      const back = once(connection, 'shares');
      b2 = await startBroker({ heartbeatIntervalMs: HEARTBEAT_MS, frontend: frontendEndpoint, backend: backendEndpoint });
      closers.push(() => b2.close());
      assert.deepEqual((await back)[0], [2, 2]);
      await eventually('broker 2 has its share again', async () => (await capacityOn(b2)) === 2, 10_000);
      await eventually('broker 1 gave it back', async () => (await capacityOn(b1)) === 2, 10_000);
    });

    it('relays its metrics through one broker at a time, and through the other once that one is gone', async () => {
      const connection = new WorkerConnection(['classify.metrics'], async (body) => body, {
        connect: `${b1.backendEndpoint},${b2.backendEndpoint}`,
        heartbeatIntervalMs: HEARTBEAT_MS,
        metricsIntervalMs: HEARTBEAT_MS,
      });
      closers.push(() => connection.close());
      connection.reportMetrics(new WorkerMetrics());
      const counts = [0, 0];
      b1.metrics.relay.on('snapshot', () => counts[0]!++);
      b2.metrics.relay.on('snapshot', () => counts[1]!++);
      connection.start();
      await once(b1.metrics.relay, 'snapshot');
      await once(b1.metrics.relay, 'snapshot');
      await once(b1.metrics.relay, 'snapshot');
      assert.deepEqual(counts.map((c) => c > 0), [true, false], `broker 2 sums no second copy of the worker's series (${counts.join(', ')})`);
      await b1.close();
      await once(b2.metrics.relay, 'snapshot');
    });

    it('runs a capacity-1 worker on two brokers one request at a time', async () => {
      const gate = new Gate();
      const registered = Promise.all([nextWorker(b1), nextWorker(b2)]);
      const connection = worker(gate, ['classify.one'], 1);
      await registered;
      const c1 = client(b1.frontendEndpoint);
      const c2 = client(b2.frontendEndpoint);
      const replies = Promise.all([c1.request('classify.one', [Buffer.from('a')]), c2.request('classify.one', [Buffer.from('b')])]);
      await eventually('both requests reached the worker', async () => connection.busy === 2, 10_000, 20);
      assert.equal(gate.running, 1, 'the second waits at the worker for the first');
      gate.open();
      assert.deepEqual((await replies).map((r) => String(r[0])), ['a', 'b']);
      assert.equal(gate.maxRunning, 1);
    });
  });

  describe('a client on two brokers', () => {
    it('spreads its requests over both brokers', async () => {
      const one = new WorkerConnection(['echo.where'], async () => [Buffer.from('b1')], { connect: b1.backendEndpoint, heartbeatIntervalMs: HEARTBEAT_MS });
      const two = new WorkerConnection(['echo.where'], async () => [Buffer.from('b2')], { connect: b2.backendEndpoint, heartbeatIntervalMs: HEARTBEAT_MS });
      closers.push(() => one.close(), () => two.close());
      const registered = Promise.all([nextWorker(b1), nextWorker(b2)]);
      one.start();
      two.start();
      await registered;
      const c = client(`${b1.frontendEndpoint},${b2.frontendEndpoint}`);
      // Wait until both connections are up, then each broker gets every other request.
      await eventually('both brokers answered', async () => {
        const seen = new Set((await Promise.all(Array.from({ length: 4 }, () => c.request('echo.where', [])))).map((r) => String(r[0])));
        return seen.size === 2;
      }, 10_000);
      const replies = await Promise.all(Array.from({ length: 20 }, () => c.request('echo.where', [])));
      const counts = { b1: 0, b2: 0 } as Record<string, number>;
      for (const [where] of replies) counts[String(where)]!++;
      assert.deepEqual(counts, { b1: 10, b2: 10 });
    });

    it('resends the idempotent requests of a broker that dies through the other, answering each once', async () => {
      const gate = new Gate();
      const registered = Promise.all([nextWorker(b1), nextWorker(b2)]);
      worker(gate, ['classify.failover', 'work.once'], 64);
      await registered;
      const c = client(`${b1.frontendEndpoint},${b2.frontendEndpoint}`);
      await eventually('both brokers connected', async () => (await Promise.all([c.services(), c.services()])).length === 2, 10_000);
      const answers: string[] = [];
      const requests = Array.from({ length: 40 }, (_, i) =>
        c.request('classify.failover', [Buffer.from(`r${i}`)]).then((reply) => {
          answers.push(String(reply[0]));
          return String(reply[0]);
        }),
      );
      // Not idempotent: one of the two goes through broker 1 and cannot be resent.
      const once1 = c.request('work.once', [Buffer.from('x')]);
      const once2 = c.request('work.once', [Buffer.from('y')]);
      const onceOutcomes = Promise.allSettled([once1, once2]);
      await eventually('every request reached the worker', async () => gate.handled === 42, 10_000, 20);
      await b1.close();
      // The requests broker 1 held (half of them) come again through broker 2.
      await eventually('resent through broker 2', async () => gate.handled >= 42 + 20, 10_000, 20);
      gate.open();
      assert.deepEqual(await Promise.all(requests), Array.from({ length: 40 }, (_, i) => `r${i}`));
      assert.equal(answers.length, 40, 'each caller answered once');
      const [first, second] = await onceOutcomes;
      const outcomes = [first!, second!].map((o) => (o.status === 'fulfilled' ? String(o.value[0]) : (o.reason as ZerveError).code)).sort();
      assert.ok(outcomes[0] === 'BROKER_LOST' && ['x', 'y'].includes(outcomes[1]!), `one lost with its broker, one answered: ${outcomes.join()}`);
    });
  });
});
