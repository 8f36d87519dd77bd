import assert from 'node:assert/strict';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { WorkerConnection, type RequestHandler } from '../shared/worker-connection.ts';
import { nextWorker, startBroker } from './helpers/cluster.ts';
import { errorCode } from './helpers/error-code.ts';

describe('worker connection drain on close', function () {
  this.timeout(20_000);
  let broker: Broker;
  let client: ZerveClient;
  let worker: WorkerConnection | undefined;
  let events: string[];

  beforeEach(async () => {
    broker = await startBroker();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 10_000 });
    events = [];
  });

  afterEach(async () => {
    await worker?.close();
    worker = undefined;
    await client.close();
    await broker.close();
  });

  /** Starts an in-process worker; resolves with a promise of its first request's start. */
  async function start(handler: RequestHandler, drainTimeoutMs: number): Promise<void> {
    const connection = new WorkerConnection(['slow'], handler, { connect: broker.backendEndpoint, capacity: 2, heartbeatIntervalMs: 200, drainTimeoutMs });
    connection.on('drain-timeout', (running: number) => events.push(`drain timeout, ${running} running`));
    const ready = nextWorker(broker, (w) => w.services.includes('slow'));
    connection.start();
    await ready;
    worker = connection;
  }

  /** Sends one request, and resolves once its handler runs; `reply` settles with the answer. */
  async function send(running: Promise<void>): Promise<{ reply: Promise<string> }> {
    const request = client.requestJson<string>('slow', [Buffer.from('x')]);
    const reply = request.then(
      (answer) => `reply ${answer}`,
      async () => `error ${await errorCode(request)}`,
    );
    await running;
    return { reply };
  }

  it('aborts a handler that watches its signal after drainTimeoutMs, and its client gets WORKER_LOST', async () => {
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    await start(async (_body, ctx) => {
      started();
      await new Promise<never>((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true }));
      return [];
    }, 200);
    const { reply } = await send(running);
    await worker!.close();
    events.push('closed');
    assert.deepEqual(events, ['drain timeout, 1 running', 'closed']);
    assert.equal(await reply, 'error WORKER_LOST');
  });

  it('lets a handler that ignores its signal (a classification) finish past drainTimeoutMs', async () => {
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    await start(async () => {
      started();
      // Still running when the grace period ends; finishes after that.
      await new Promise<void>((resolve) => worker!.once('drain-timeout', () => setImmediate(resolve)));
      events.push('handler finished');
      return [Buffer.from(JSON.stringify('done'))];
    }, 100);
    const { reply } = await send(running);
    await worker!.close();
    events.push('closed');
    assert.deepEqual(events, ['drain timeout, 1 running', 'handler finished', 'closed']);
    assert.equal(await reply, 'reply done');
  });

  it('closes without aborting when requests end within the grace period', async () => {
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    let finish!: () => void;
    await start(async (_body, ctx) => {
      started();
      await new Promise<void>((resolve) => (finish = resolve));
      events.push(ctx.signal.aborted ? 'handler aborted' : 'handler finished');
      return [Buffer.from(JSON.stringify('done'))];
    }, 60_000);
    const { reply } = await send(running);
    const closed = worker!.close().then(() => events.push('closed'));
    finish();
    await closed;
    assert.deepEqual(events, ['handler finished', 'closed']);
    assert.equal(await reply, 'reply done');
  });
});
