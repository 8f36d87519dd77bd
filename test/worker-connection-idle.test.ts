import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { nextWorker, startBroker } from './helpers/cluster.ts';

describe('a worker connection with no services yet (a model holder with nothing to offer)', function () {
  this.timeout(20_000);
  const HEARTBEAT_MS = 100;
  let broker: Broker;
  let client: ZerveClient;
  let worker: WorkerConnection | undefined;

  beforeEach(async () => {
    broker = await startBroker({ heartbeatIntervalMs: HEARTBEAT_MS });
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 5_000 });
  });

  afterEach(async () => {
    await worker?.close();
    await client.close();
    await broker.close();
  });

  it('stays connected without heartbeats (no DISCONNECT loop), and registers once it is given a service', async () => {
    const reconnects: string[] = [];
    worker = new WorkerConnection([], async (body) => body, { connect: broker.backendEndpoint, heartbeatIntervalMs: HEARTBEAT_MS });
    worker.on('reconnecting', (reason: string) => reconnects.push(reason));
    worker.start();
    await sleep(HEARTBEAT_MS * 3 * 4); // four liveness periods
    assert.deepEqual(reconnects, [], 'an unregistered connection neither heartbeats (answered DISCONNECT) nor expects the broker to');
    assert.deepEqual(await client.workers(), []);
    const registered = nextWorker(broker, (w) => w.services.includes('echo.idle'));
    worker.setServices(['echo.idle']);
    await registered;
    assert.equal(String((await client.request('echo.idle', [Buffer.from('hi')]))[0]), 'hi');
    await sleep(HEARTBEAT_MS * 3 * 2);
    assert.deepEqual(reconnects, [], 'registered, it heartbeats as usual');
  });
});
