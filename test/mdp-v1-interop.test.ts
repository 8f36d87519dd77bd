import assert from 'node:assert/strict';
import * as zmq from 'zeromq';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { nextWorker, startBroker } from './helpers/cluster.ts';

// Frames written from RFC 7 (MDP/0.1) itself, not from our protocol module, so the test checks our
// broker against the spec rather than against its own encoder.
const EMPTY = Buffer.alloc(0);
const MDPC01 = Buffer.from('MDPC01');
const MDPW01 = Buffer.from('MDPW01');
const READY = Buffer.from([0x01]);
const REQUEST = 0x02;
const REPLY = Buffer.from([0x03]);
const HEARTBEAT = 0x04;

describe('MDP/0.1 interoperability', () => {
  let broker: Broker;
  const sockets: Array<{ close(): void }> = [];

  beforeEach(async () => {
    broker = await startBroker();
  });

  afterEach(async () => {
    sockets.splice(0).forEach((s) => s.close());
    await broker.close();
  });

  /** An RFC 7 worker on a DEALER socket that upper-cases request bodies. */
  async function startV1Worker(service: string): Promise<zmq.Dealer> {
    const worker = new zmq.Dealer({ linger: 0 });
    sockets.push(worker);
    worker.connect(broker.backendEndpoint);
    const registered = nextWorker(broker, (w) => w.protocol === 'MDP/0.1');
    await worker.send([EMPTY, MDPW01, READY, Buffer.from(service)]);
    await registered;
    void (async () => {
      try {
        for await (const frames of worker) {
          // [empty, "MDPW01", command, ...]
          assert.equal(frames[0]!.length, 0);
          assert.ok(frames[1]!.equals(MDPW01));
          const command = frames[2]![0];
          if (command === HEARTBEAT) {
            await worker.send([EMPTY, MDPW01, Buffer.from([HEARTBEAT])]);
          } else if (command === REQUEST) {
            const [client, delimiter, ...body] = frames.slice(3);
            assert.equal(delimiter!.length, 0);
            await worker.send([EMPTY, MDPW01, REPLY, client!, EMPTY, ...body.map((b) => Buffer.from(b.toString().toUpperCase()))]);
          }
        }
      } catch {
        // socket closed at the end of the test
      }
    })();
    return worker;
  }

  it('serves an MDP/0.1 client on a REQ socket', async () => {
    await startV1Worker('upper');
    const req = new zmq.Request({ linger: 0 });
    sockets.push(req);
    req.connect(broker.frontendEndpoint);
    await req.send([MDPC01, Buffer.from('upper'), Buffer.from('hello')]); // REQ adds the empty frame
    const reply = await req.receive();
    assert.deepEqual(reply.map(String), ['MDPC01', 'upper', 'HELLO']);
  });

  it('lets an MDP/0.2 client use an MDP/0.1 worker, and lists it in mmi.workers', async () => {
    await startV1Worker('upper');
    const client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 5000 });
    try {
      const reply = await client.request('upper', [Buffer.from('abc')]);
      assert.equal(String(reply[0]), 'ABC');
      const [worker] = await client.workers();
      assert.equal(worker!.protocol, 'MDP/0.1');
      assert.equal(worker!.capacity, 1, 'a plain MDP worker counts as capacity 1');
    } finally {
      await client.close();
    }
  });

  it('sends an MDP/0.1 client only the FINAL reply of an MDP/0.2 worker', async () => {
    const { createEchoWorker } = await import('../workers/echo/echo-worker.ts');
    const echo = createEchoWorker({ connect: broker.backendEndpoint, heartbeatIntervalMs: 200 });
    const ready = nextWorker(broker);
    echo.start();
    await ready;
    try {
      const req = new zmq.Request({ linger: 0 });
      sockets.push(req);
      req.connect(broker.frontendEndpoint);
      await req.send([MDPC01, Buffer.from('echo'), Buffer.from('{"partials":3}')]);
      const reply = await req.receive();
      assert.deepEqual(reply.map(String), ['MDPC01', 'echo', '{"partials":3}']);
    } finally {
      await echo.close();
    }
  });
});
