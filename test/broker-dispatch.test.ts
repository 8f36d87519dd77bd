import assert from 'node:assert/strict';
import { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { ZerveError } from '../shared/errors.ts';
import type { ServiceInfo, WorkerInfo } from '../shared/messages.ts';
import { WorkerConnection, type RequestHandler } from '../shared/worker-connection.ts';
import { nextWorker, startBroker } from './helpers/cluster.ts';
import { errorCode } from './helpers/error-code.ts';
import { eventually } from './helpers/eventually.ts';

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

/** Starts an in-process worker and resolves once the broker registered it. */
async function startWorker(broker: Broker, services: string[], handler: RequestHandler, capacity = 1): Promise<WorkerConnection> {
  const worker = new WorkerConnection(services, handler, { connect: broker.backendEndpoint, capacity, heartbeatIntervalMs: 200 });
  const ready = nextWorker(broker, (w) => w.services.includes(services[0]!));
  worker.start();
  await ready;
  return worker;
}

/** A handler whose requests stay open until released, recording which worker got what. */
function gate(log: string[], name: string) {
  const waiting: Array<() => void> = [];
  const handler: RequestHandler = async (body) => {
    log.push(`${name}:${body[0]}`);
    await new Promise<void>((resolve) => waiting.push(resolve));
    return body;
  };
  return { handler, release: () => waiting.splice(0).forEach((r) => r()), get pending() { return waiting.length; } };
}


describe('broker dispatch', () => {
  let broker: Broker;
  let client: ZerveClient;
  const workers: WorkerConnection[] = [];

  beforeEach(async () => {
    broker = await startBroker({ defaultDeadlineMs: 5000 });
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 5000 });
  });

  afterEach(async () => {
    await client.close();
    await Promise.all(workers.splice(0).map((w) => w.close()));
    await broker.close();
  });

  it('answers a request through a worker', async () => {
    workers.push(await startWorker(broker, ['echo'], async (body) => body));
    const reply = await client.request('echo', [Buffer.from('hello'), Buffer.from('world')]);
    assert.deepEqual(reply.map(String), ['hello', 'world']);
  });

  it('takes workers and clients on either endpoint of a plain loopback broker', async () => {
    assert.notEqual(broker.frontendEndpoint, broker.backendEndpoint);
    const onFrontend = new WorkerConnection(['front'], async () => [Buffer.from('from the client endpoint')], { connect: broker.frontendEndpoint, heartbeatIntervalMs: 200 });
    const ready = nextWorker(broker, (w) => w.services.includes('front'));
    onFrontend.start();
    workers.push(onFrontend);
    await ready;
    workers.push(await startWorker(broker, ['back'], async () => [Buffer.from('from the worker endpoint')]));
    const viaBackend = new ZerveClient({ broker: broker.backendEndpoint, timeoutMs: 5000 });
    try {
      for (const c of [client, viaBackend]) {
        assert.equal(String((await c.request('front', [Buffer.from('x')]))[0]), 'from the client endpoint');
        assert.equal(String((await c.request('back', [Buffer.from('x')]))[0]), 'from the worker endpoint');
      }
    } finally {
      await viaBackend.close();
    }
  });

  it('streams PARTIAL replies before the FINAL one', async () => {
    workers.push(
      await startWorker(broker, ['progress'], async (_body, ctx) => {
        ctx.partial([json({ step: 1 })]);
        ctx.partial([json({ step: 2 })]);
        return [json({ done: true })];
      }),
    );
    const chunks = [];
    for await (const chunk of client.stream('progress', [json({})])) chunks.push([chunk.final, String(chunk.body[0])]);
    assert.deepEqual(chunks, [
      [false, '{"step":1}'],
      [false, '{"step":2}'],
      [true, '{"done":true}'],
    ]);
  });

  it('sends a request only to a worker with free capacity', async () => {
    const log: string[] = [];
    const a = gate(log, 'a');
    const b = gate(log, 'b');
    workers.push(await startWorker(broker, ['slow'], a.handler, 1), await startWorker(broker, ['slow'], b.handler, 1));
    const replies = [1, 2, 3].map((i) => client.request('slow', [Buffer.from(String(i))]));
    while (a.pending + b.pending < 2) await new Promise((r) => setImmediate(r));
    const [queued] = (await client.services()).filter((s) => s.name === 'slow');
    assert.equal(queued!.queued, 1, 'the third request waits in the broker, not behind a busy worker');
    assert.equal(a.pending, 1);
    assert.equal(b.pending, 1);
    try {
      a.release();
      while (log.length < 3) await new Promise((r) => setImmediate(r));
      assert.match(log[2]!, /^a:/, 'the worker that freed a slot gets the waiting request');
    } finally {
      a.release();
      b.release();
    }
    assert.deepEqual((await Promise.all(replies)).map((r) => String(r[0])), ['1', '2', '3']);
  });

  it('keeps a slow service from delaying another service on the same worker', async () => {
    const log: string[] = [];
    const slow = gate(log, 'slow');
    workers.push(
      await startWorker(
        broker,
        ['slow', 'fast'],
        async (body, ctx) => (ctx.service === 'slow' ? slow.handler(body, ctx) : body),
        2,
      ),
    );
    const slowReply = client.request('slow', [Buffer.from('s')]);
    while (slow.pending < 1) await new Promise((r) => setImmediate(r));
    const fast = await client.request('fast', [Buffer.from('f')]);
    assert.equal(String(fast[0]), 'f');
    slow.release();
    assert.equal(String((await slowReply)[0]), 's');
  });

  it('answers OVERLOADED at once past the queue bound', async () => {
    await broker.close();
    broker = await startBroker({ maxQueuedPerService: 2 });
    await client.close();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 5000 });
    const log: string[] = [];
    const g = gate(log, 'w');
    workers.push(await startWorker(broker, ['busy'], g.handler, 1));
    const accepted = [1, 2, 3].map((i) => client.request('busy', [Buffer.from(String(i))]));
    while (g.pending < 1) await new Promise((r) => setImmediate(r));
    while ((await client.services()).find((s) => s.name === 'busy')!.queued < 2) await new Promise((r) => setImmediate(r));
    assert.equal(await errorCode(client.requestJson('busy', [Buffer.from('4')])), 'OVERLOADED');
    const release = setInterval(() => g.release(), 5);
    await Promise.all(accepted);
    clearInterval(release);
  });

  it('answers NO_WORKERS at the deadline when no worker offers the service, not before', async () => {
    let answered = false;
    const answer = errorCode(client.requestJson('nobody.here', [json({ deadlineMs: 1000 })])).finally(() => (answered = true));
    await eventually('the request waiting at the broker', async () => (await client.services()).some((s) => s.name === 'nobody.here' && s.queued === 1), 10_000, 10);
    // Order, not time: the broker held the request in its queue before answering it.
    assert.equal(answered, false, 'still waiting while queued, not answered at once');
    assert.equal(await answer, 'NO_WORKERS');
    assert.equal((await client.services()).some((s) => s.name === 'nobody.here'), false, 'its queue entry is gone');
  });

  it('answers TIMEOUT for a request that expires while queued, and never dispatches it', async () => {
    const log: string[] = [];
    const g = gate(log, 'w');
    workers.push(await startWorker(broker, ['q'], g.handler, 1));
    const first = client.request('q', [json({ n: 1 })]);
    while (g.pending < 1) await new Promise((r) => setImmediate(r));
    assert.equal(await errorCode(client.requestJson('q', [json({ n: 2, deadlineMs: 100 })])), 'TIMEOUT');
    g.release();
    await first;
    assert.deepEqual(log, ['w:{"n":1}'], 'the expired request never reached the worker');
  });

  it('answers the management services (RFC 8 mmi.*)', async () => {
    workers.push(await startWorker(broker, ['echo', 'echo.two'], async (body) => body, 3));
    assert.equal(await client.hasService('echo'), true);
    assert.equal(await client.hasService('absent'), false);
    const services: ServiceInfo[] = await client.services();
    assert.deepEqual(services.map((s) => [s.name, s.workers, s.capacity]), [['echo', 1, 3], ['echo.two', 1, 3]]);
    const listed: WorkerInfo[] = await client.workers();
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.pid, process.pid);
    assert.equal(listed[0]!.protocol, 'MDP/0.2');
    assert.equal(String((await client.request('mmi.unknown', []))[0]), '501');
  });

  it('turns a worker error into an error reply without disturbing the next request', async () => {
    workers.push(
      await startWorker(broker, ['picky'], async (body) => {
        if (String(body[0]) === 'bad') throw new ZerveError('BAD_REQUEST', 'bad input');
        if (String(body[0]) === 'crash') throw new Error('unexpected');
        return body;
      }),
    );
    assert.equal(await errorCode(client.requestJson('picky', [Buffer.from('bad')])), 'BAD_REQUEST');
    assert.equal(await errorCode(client.requestJson('picky', [Buffer.from('crash')])), 'INTERNAL');
    assert.equal(String((await client.request('picky', [Buffer.from('good')]))[0]), 'good');
  });
});
