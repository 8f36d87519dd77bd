import assert from 'node:assert/strict';
import * as zmq from 'zeromq';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { createEchoWorker } from '../workers/echo/echo-worker.ts';
import { encodeClientRequest, MDPC02, MDPW02 } from '../shared/protocol.ts';
import { CliProcess, nextWorker, spawnWorker, startBroker, TEST_HEARTBEAT_MS } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('broker faults', () => {
  let broker: Broker;
  let client: ZerveClient;
  const processes: CliProcess[] = [];

  beforeEach(async () => {
    broker = await startBroker({ defaultDeadlineMs: 10_000 });
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 10_000 });
  });

  afterEach(async () => {
    await client.close();
    await Promise.all(processes.splice(0).map((p) => p.kill()));
    await broker.close();
  });

  it('requeues in-flight requests when their worker is SIGKILLed', async () => {
    const victim = await spawnWorker(broker, ['echo', '--capacity', '8']);
    processes.push(victim);
    const requests = Array.from({ length: 8 }, (_, i) => client.request('echo', [json({ delayMs: 400 }), Buffer.from(String(i))]));
    await eventually('8 echo requests in flight', async () => (await client.services()).find((s) => s.name === 'echo')!.inFlight >= 8, 30_000, 10);
    const removed = new Promise((resolve) => broker.once('worker-removed', resolve));
    await victim.kill('SIGKILL');
    processes.push(await spawnWorker(broker, ['echo', '--capacity', '8']));
    await removed;
    const replies = await Promise.all(requests);
    assert.deepEqual(replies.map((r) => String(r[1])), ['0', '1', '2', '3', '4', '5', '6', '7']);
  });

  it('spreads load over two workers', async () => {
    processes.push(await spawnWorker(broker, ['echo', '--capacity', '2']), await spawnWorker(broker, ['echo', '--capacity', '2']));
    // Four requests that outlast the check fill both workers' two slots: least loaded first.
    const replies = Promise.all(Array.from({ length: 4 }, (_, i) => client.request('echo', [json({ delayMs: 3000 }), Buffer.from(`r${i}`)])));
    let inFlight: number[] = [];
    while (inFlight.reduce((a, b) => a + b, 0) < 4) inFlight = (await client.workers()).map((w) => w.inFlight);
    assert.deepEqual(inFlight, [2, 2]);
    assert.deepEqual((await replies).map((r) => String(r[1])), ['r0', 'r1', 'r2', 'r3']);
  });

  it('gets workers back after a broker restart, and clients succeed again', async () => {
    processes.push(await spawnWorker(broker, ['echo']));
    const { frontendEndpoint, backendEndpoint } = broker;
    await broker.close();
    broker = await startBroker({ frontend: frontendEndpoint, backend: backendEndpoint });
    await nextWorker(broker);
    const reply = await client.request('echo', [Buffer.from('again')]);
    assert.equal(String(reply[0]), 'again');
  });

  it('keeps its workers when its process was paused past their liveness, workers in it included', async () => {
    // The broker and an in-process worker (as `zerve up` runs the jobs service) share this process, so
    // both are paused together, with each other's heartbeats of that time unread.
    const inProcess = createEchoWorker({ connect: broker.backendEndpoint, heartbeatIntervalMs: TEST_HEARTBEAT_MS }, 'echo.here');
    const ready = nextWorker(broker, (w) => w.services.includes('echo.here'));
    inProcess.start();
    await ready;
    const before = (await client.workers()).map((w) => w.id).sort();
    const removed: string[] = [];
    broker.on('worker-removed', (_info: unknown, reason: string) => removed.push(reason));
    try {
      const blockUntil = performance.now() + 4 * TEST_HEARTBEAT_MS * broker.options.heartbeatLiveness;
      while (performance.now() < blockUntil);
      assert.equal(String((await client.request('echo.here', [Buffer.from('still here')]))[0]), 'still here');
      await new Promise((r) => setTimeout(r, 2 * TEST_HEARTBEAT_MS * broker.options.heartbeatLiveness));
      assert.deepEqual(removed, [], 'no worker was dropped');
      assert.deepEqual((await client.workers()).map((w) => w.id).sort(), before, 'the same connections, none made again');
    } finally {
      await inProcess.close();
    }
  });

  it('lets a worker finish its requests on SIGTERM before it leaves', async () => {
    const worker = await spawnWorker(broker, ['echo', '--capacity', '4']);
    processes.push(worker);
    const requests = Array.from({ length: 4 }, (_, i) => client.request('echo', [json({ delayMs: 300 }), Buffer.from(String(i))]));
    await eventually('4 echo requests in flight', async () => (await client.services()).find((s) => s.name === 'echo')!.inFlight >= 4, 30_000, 10);
    const removed = new Promise<string>((resolve) => broker.once('worker-removed', (_info, reason: string) => resolve(reason)));
    worker.child.kill('SIGTERM');
    assert.deepEqual((await Promise.all(requests)).map((r) => String(r[1])), ['0', '1', '2', '3']);
    assert.equal(await removed, 'worker disconnected');
    assert.deepEqual(await worker.exited, [0, null]);
  });

  it('drops malformed and hostile messages and keeps serving others', async () => {
    await broker.close();
    broker = await startBroker({ maxMessageBytes: 1024 * 1024 });
    await client.close();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 5000 });
    processes.push(await spawnWorker(broker, ['echo']));
    const hostile = new zmq.Dealer({ linger: 0 });
    hostile.connect(broker.frontendEndpoint);
    const fakeWorker = new zmq.Dealer({ linger: 0 });
    fakeWorker.connect(broker.backendEndpoint);
    try {
      await hostile.send([Buffer.from('HTTP/1.1'), Buffer.from('GET /')]); // wrong protocol header
      await hostile.send([MDPC02]); // missing frames
      await hostile.send([MDPC02, Buffer.from([0x09]), Buffer.from('echo')]); // unknown client command
      await hostile.send([Buffer.alloc(0)]); // an empty frame alone
      await fakeWorker.send([MDPW02, Buffer.from([0x7f])]); // unknown worker command
      await fakeWorker.send([MDPW02, Buffer.from([0x04]), Buffer.from('nobody'), Buffer.alloc(0), Buffer.from('x')]); // reply from a stranger
      await hostile.send(encodeClientRequest('echo', [Buffer.alloc(2 * 1024 * 1024)])); // over maxMessageBytes
      const reply = await client.request('echo', [Buffer.from('still here')]);
      assert.equal(String(reply[0]), 'still here');
      const [workers] = [await client.workers()];
      assert.equal(workers.length, 1, 'the stranger did not become a worker');
    } finally {
      hostile.close();
      fakeWorker.close();
    }
  });
});
