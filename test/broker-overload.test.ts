import assert from 'node:assert/strict';
import * as zmq from 'zeromq';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { ZerveError } from '../shared/errors.ts';
import { encodeClientRequest } from '../shared/protocol.ts';
import { WorkerConnection, type RequestHandler, type ServiceTraits } from '../shared/worker-connection.ts';
import { retryAfterSeconds } from '../webapp/http-status.ts';
import { nextWorker, startBroker } from './helpers/cluster.ts';
import { errorCode } from './helpers/error-code.ts';
import { eventually } from './helpers/eventually.ts';

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const GREEDY = 100_000;
const tick = () => new Promise((r) => setImmediate(r));

/** A capacity-1 worker whose requests stay open until released one at a time; `log` is the dispatch order. */
async function gatedWorker(broker: Broker, service: string, heartbeatIntervalMs = 200, traits: ServiceTraits = {}) {
  const log: string[] = [];
  const waiting: Array<() => void> = [];
  const handler: RequestHandler = async (body) => {
    log.push(String(body.at(-1)));
    await new Promise<void>((resolve) => waiting.push(resolve));
    return body;
  };
  const worker = new WorkerConnection([service], handler, { connect: broker.backendEndpoint, capacity: 1, heartbeatIntervalMs, ...traits });
  const ready = nextWorker(broker, (w) => w.services.includes(service));
  worker.start();
  await ready;
  return {
    log,
    worker,
    /** Lets the request in flight finish and waits until the broker dispatched the next one. */
    async releaseOne(): Promise<void> {
      while (waiting.length === 0) await tick();
      const before = log.length;
      waiting.shift()!();
      while (log.length === before) await tick();
    },
    /** Lets every request in flight finish, now and from then on. */
    releaseAll(): void {
      waiting.splice(0).forEach((r) => r());
      waiting.push = ((resolve: () => void) => (resolve(), 0)) as typeof waiting.push;
    },
    close: () => {
      waiting.splice(0).forEach((r) => r());
      return worker.close();
    },
  };
}

describe('broker overload and hostile bounds', function () {
  this.timeout(60_000);
  let broker: Broker;
  let client: ZerveClient;
  const closers: Array<() => unknown> = [];

  async function start(options: Parameters<typeof startBroker>[0] = {}): Promise<void> {
    broker = await startBroker({ defaultDeadlineMs: 30_000, ...options });
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 5000 });
  }

  async function queued(service: string): Promise<number> {
    return (await client.services()).find((s) => s.name === service)?.queued ?? 0;
  }

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await client.close();
    await broker.close();
  });

  it('dispatches a second client\'s single request within 2 turns while another client has 100,000 queued', async function () {
    this.timeout(60_000);
    // Slow heartbeats: broker, worker and the flood share this process's event loop.
    await start({ heartbeatIntervalMs: 2000 });
    const gate = await gatedWorker(broker, 'fair', 2000);
    closers.push(() => gate.close());
    const greedy = new zmq.Dealer({ linger: 0, sendHighWaterMark: 200_000 });
    closers.push(() => greedy.close());
    greedy.connect(broker.frontendEndpoint);
    for (let i = 0; i < GREEDY; i++) await greedy.send(encodeClientRequest('fair', [Buffer.from(`a${i}`)]));
    await eventually('the greedy client queued', async () => (await queued('fair')) >= GREEDY - 1, 60_000, 20); // one is in flight
    const single = client.request('fair', [Buffer.from('b')]);
    while ((await queued('fair')) < GREEDY) await tick();
    await gate.releaseOne();
    await gate.releaseOne();
    assert.deepEqual(gate.log, ['a0', 'a1', 'b'], 'the single request went right after the greedy client\'s next one');
    await gate.releaseOne();
    assert.equal(String((await single)[0]), 'b');
    assert.equal(gate.log.at(-1), 'a2', 'then the greedy client again');
  });

  it('answers OVERLOADED at once past maxQueuedBytesPerService, with a retry hint from the drain rate that Retry-After uses', async () => {
    await start({ maxQueuedBytesPerService: 1000 });
    const gate = await gatedWorker(broker, 'bytes');
    closers.push(() => gate.close());
    const body = (tag: string) => [Buffer.alloc(400, 0x78), Buffer.from(tag)];
    const accepted = ['r0', 'r1', 'r2'].map((tag) => client.request('bytes', body(tag)));
    while ((await queued('bytes')) < 2) await tick();
    // 2 x 401 bytes wait; one more would make 1203 > 1000. Nothing has drained yet: the hint is the ceiling.
    const first = await client.requestJson('bytes', body('r3')).catch((err: unknown) => err);
    assert.ok(first instanceof ZerveError && first.code === 'OVERLOADED', String(first));
    assert.equal(first.details?.retryAfterMs, 60_000);
    await gate.releaseOne(); // r1 from the queue: one dispatch counted
    accepted.push(client.request('bytes', body('r4')));
    while ((await queued('bytes')) < 2) await tick();
    const second = await client.requestJson('bytes', body('r5')).catch((err: unknown) => err);
    assert.ok(second instanceof ZerveError && second.code === 'OVERLOADED');
    const hint = second.details?.retryAfterMs as number;
    // 2 waiting at 1 dispatch per 2 s window: about 4 s to drain (more if the dispatch already left the window).
    assert.ok(hint >= 4000 && hint <= 60_000, `retry hint ${hint} ms`);
    assert.equal(retryAfterSeconds(second, 1), Math.ceil(hint / 1000), 'HTTP Retry-After is the hint in whole seconds');
    assert.equal(retryAfterSeconds(new ZerveError('NO_WORKERS'), 7), 7, 'without a hint the web app keeps its own');
    gate.releaseAll();
    assert.deepEqual((await Promise.all(accepted)).map((r) => String(r[1])), ['r0', 'r1', 'r2', 'r4']);
  });

  it('lowers a deadlineMs of 1e18 to the cap of its service prefix, while train keeps a long one', async () => {
    await start({ maxDeadlineMs: { '': 300, train: 100_000 } });
    const junk = await errorCode(client.requestJson('junk.service', [json({ deadlineMs: 1e18 })]));
    assert.equal(junk, 'NO_WORKERS', 'answered at the 300 ms cap, long before the client gives up at 5 s');
    const train = client.requestJson('train', [json({ deadlineMs: 1e18 })], { timeoutMs: 60_000 }).catch((err: unknown) => err);
    while ((await queued('train')) < 1) await tick();
    await new Promise((r) => setTimeout(r, 600)); // twice the default cap
    assert.equal(await queued('train'), 1, 'train is still waiting for a worker');
    const gate = await gatedWorker(broker, 'train');
    closers.push(() => gate.close());
    while (gate.log.length === 0) await tick();
    assert.deepEqual(gate.log, [JSON.stringify({ deadlineMs: 1e18 })], 'dispatched once a worker came');
    gate.releaseAll();
    assert.deepEqual(await train, { deadlineMs: 1e18 });
  });

  it('lets a worker declare a longer deadline for its service in READY: the broker knows no application service', async () => {
    await start({ maxDeadlineMs: { '': 300 } });
    const slow = await gatedWorker(broker, 'slow', 200, { maxDeadlineMs: (service) => (service === 'slow' ? 100_000 : undefined) });
    closers.push(() => slow.close());
    const held = client.request('slow', [json({ deadlineMs: 1e18 }), Buffer.from('s1')]);
    while (slow.log.length < 1) await tick();
    const waiting = client.request('slow', [json({ deadlineMs: 1e18 }), Buffer.from('s2')]);
    while ((await queued('slow')) < 1) await tick();
    // Asked after the queued one and capped at the broker's 300 ms: when it is answered, an undeclared cap would have ended both.
    assert.equal(await errorCode(client.requestJson('nobody', [json({ deadlineMs: 1e18 })])), 'NO_WORKERS');
    assert.equal(await queued('slow'), 1, 'the request to the declared service still waits');
    slow.releaseAll();
    assert.equal(String((await held).at(-1)), 's1');
    assert.equal(String((await waiting).at(-1)), 's2');
  });

  it('refuses service names that are not printable ASCII or longer than 255 bytes with BAD_REQUEST', async () => {
    await start({ defaultDeadlineMs: 200 });
    for (const name of ['has space', 'caf\u00e9', 'nul\u0000byte', 'tab\there', 'x'.repeat(256)]) {
      assert.equal(await errorCode(client.requestJson(name, [])), 'BAD_REQUEST', JSON.stringify(name));
    }
    assert.equal(await errorCode(client.requestJson('x'.repeat(255), [])), 'NO_WORKERS', 'a 255-byte name is fine');
  });

  it('answers NO_WORKERS at once past 3 services without workers or 1000 bytes for them, and removes idle entries', async () => {
    await start({ maxUnservedServices: 3, maxUnservedBytes: 1000 });
    const waiting = ['u1', 'u2', 'u3'].map((s) => client.requestJson(s, [json({ deadlineMs: 400 })]).catch((err: unknown) => err));
    while ((await client.services()).length < 3) await tick();
    // Each would wait 60 s; the client gives up at 5 s: NO_WORKERS before that is the bound speaking.
    assert.equal(await errorCode(client.requestJson('u4', [json({ deadlineMs: 60_000 })])), 'NO_WORKERS');
    for (const err of await Promise.all(waiting)) assert.ok(err instanceof ZerveError && err.code === 'NO_WORKERS');
    await eventually('the idle service entries removed', async () => (await client.services()).length === 0, 30_000, 20);
    const big = client.requestJson('b1', [json({ deadlineMs: 400 }), Buffer.alloc(600)]).catch((err: unknown) => err);
    while ((await queued('b1')) < 1) await tick();
    assert.equal(await errorCode(client.requestJson('b2', [json({ deadlineMs: 60_000 }), Buffer.alloc(600)])), 'NO_WORKERS', '1200 bytes would wait');
    assert.ok(((await big) as ZerveError).code === 'NO_WORKERS');
    await eventually('the idle service entries removed', async () => (await client.services()).length === 0, 30_000, 20);
    assert.deepEqual(await client.services(), [], 'no entry is left for names nobody serves');
  });
});
