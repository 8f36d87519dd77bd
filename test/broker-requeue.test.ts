import assert from 'node:assert/strict';
import * as zmq from 'zeromq';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { decodeReply } from '../shared/messages.ts';
import { nextWorker, startBroker } from './helpers/cluster.ts';
import { hasCode } from './helpers/error-code.ts';

// Frames written from RFC 7 (MDP/0.1) itself: these workers are what any Majordomo library sends.
const EMPTY = Buffer.alloc(0);
const MDPW01 = Buffer.from('MDPW01');
const READY = Buffer.from([0x01]);
const REQUEST = 0x02;
const REPLY = Buffer.from([0x03]);
const HEARTBEAT = 0x04;
const SERVICE = 'work';

/** A raw MDP/0.1 worker: records the bodies it is sent, answers them upper-cased unless told to keep them. */
interface RawWorker {
  socket: zmq.Dealer;
  received: string[];
  /** Resolves when the next request arrives. */
  nextRequest(): Promise<string>;
}

describe('Broker: resending the requests of a worker that dies', () => {
  let broker: Broker;
  let client: ZerveClient;
  const sockets: zmq.Dealer[] = [];

  beforeEach(async () => {
    broker = await startBroker({ defaultDeadlineMs: 20_000 });
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 20_000, retries: 0 });
  });

  afterEach(async () => {
    sockets.splice(0).forEach((s) => s.close());
    await client.close();
    await broker.close();
  });

  /**
   * Registers a worker; `idempotent` adds Zerve's READY extension frame declaring SERVICE idempotent,
   * without it the READY is plain RFC 7. `answer: false` makes it hold requests without replying.
   */
  async function startWorker(name: string, options: { idempotent: boolean; answer: boolean }): Promise<RawWorker> {
    const socket = new zmq.Dealer({ linger: 0, routingId: name });
    sockets.push(socket);
    socket.connect(broker.backendEndpoint);
    const received: string[] = [];
    let waiting: ((body: string) => void) | undefined;
    const registered = nextWorker(broker);
    const ready = [EMPTY, MDPW01, READY, Buffer.from(SERVICE)];
    if (options.idempotent) ready.push(Buffer.from(JSON.stringify({ services: [SERVICE], capacity: 1, idempotent: [SERVICE] })));
    await socket.send(ready);
    await registered;
    void (async () => {
      try {
        for await (const frames of socket) {
          const command = frames[2]![0];
          if (command === HEARTBEAT) {
            await socket.send([EMPTY, MDPW01, Buffer.from([HEARTBEAT])]);
          } else if (command === REQUEST) {
            const [replyTo, , ...rest] = frames.slice(3);
            // An extended worker gets the service name as the first body frame.
            const body = String(options.idempotent ? rest[1] : rest[0]);
            received.push(body);
            waiting?.(body);
            waiting = undefined;
            if (options.answer) await socket.send([EMPTY, MDPW01, REPLY, replyTo!, EMPTY, Buffer.from(body.toUpperCase())]);
          }
        }
      } catch {
        // socket closed: the worker died, or the test ended
      }
    })();
    return { socket, received, nextRequest: () => new Promise((resolve) => (waiting = resolve)) };
  }

  /** Sends a request to a worker that takes it and then dies (stops heartbeating); a second worker is ready meanwhile. */
  async function dieWithRequest(idempotent: boolean): Promise<{ reply: Promise<Buffer[]>; survivor: RawWorker }> {
    const doomed = await startWorker('doomed', { idempotent, answer: false });
    const taken = doomed.nextRequest();
    const reply = client.request(SERVICE, [Buffer.from('in flight')]);
    assert.equal(await taken, 'in flight');
    const survivor = await startWorker('survivor', { idempotent: false, answer: true });
    doomed.socket.close();
    return { reply, survivor };
  }

  it('answers WORKER_LOST and never resends the request of a plain MDP/0.1 worker (no idempotent services in READY)', async () => {
    const { reply, survivor } = await dieWithRequest(false);
    const [body] = await reply;
    assert.throws(() => decodeReply(body), hasCode('WORKER_LOST'));
    assert.deepEqual(survivor.received, [], 'the lost request went to no other worker');
    // The other worker was there and serving all along.
    const [answer] = await client.request(SERVICE, [Buffer.from('next')]);
    assert.equal(String(answer), 'NEXT');
    assert.deepEqual(survivor.received, ['next']);
  });

  it('sends the request of a worker that declared the service idempotent to another worker', async () => {
    const { reply, survivor } = await dieWithRequest(true);
    const [answer] = await reply;
    assert.equal(String(answer), 'IN FLIGHT');
    assert.deepEqual(survivor.received, ['in flight']);
  });
});
