import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import * as zmq from 'zeromq';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import {
  CLIENT_TAGGED,
  ClientCommand,
  MDPC02,
  encodeClientReply,
  encodeClientRequest,
  parseClientReply,
  parseClientRequest,
} from '../shared/protocol.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { nextWorker, startBroker } from './helpers/cluster.ts';
import { errorCode } from './helpers/error-code.ts';

/**
 * A ROUTER standing in for the broker: it records every request with the client identity it came
 * from, and the test answers them when and in the order it likes.
 */
class FakeBroker {
  readonly socket = new zmq.Router({ linger: 0 });
  readonly requests: { identity: Buffer; tag: Buffer; service: Buffer; body: Buffer[] }[] = [];
  private waiting?: { count: number; resolve: () => void };
  endpoint = '';

  async start(): Promise<void> {
    await this.socket.bind('tcp://127.0.0.1:*');
    this.endpoint = this.socket.lastEndpoint!;
    void (async () => {
      for await (const [identity, ...frames] of this.socket) {
        const request = parseClientRequest(frames);
        assert.ok(request.tag, 'every request of the client is tagged');
        this.requests.push({ identity: identity!, tag: request.tag, service: request.serviceFrame, body: request.body });
        if (this.waiting && this.requests.length >= this.waiting.count) this.waiting.resolve();
      }
    })();
  }

  /** Resolves once `count` requests have arrived. */
  received(count: number): Promise<void> {
    if (this.requests.length >= count) return Promise.resolve();
    return new Promise((resolve) => (this.waiting = { count, resolve }));
  }

  reply(index: number, body: Buffer[], final = true): Promise<void> {
    const r = this.requests[index]!;
    return this.socket.send([r.identity, ...encodeClientReply(2, r.service, body, final, r.tag)]);
  }

  close(): void {
    this.socket.close();
  }
}

describe('client multiplexing (one socket, correlation tags)', function () {
  this.timeout(20_000);

  describe('against a stand-in broker', () => {
    let fake: FakeBroker;
    let client: ZerveClient;

    beforeEach(async () => {
      fake = new FakeBroker();
      await fake.start();
      client = new ZerveClient({ broker: fake.endpoint, timeoutMs: 5000 });
    });

    afterEach(async () => {
      await client.close();
      fake.close();
    });

    it('sends 1,000 concurrent requests on one socket and matches replies answered in reverse order', async () => {
      const replies = Array.from({ length: 1000 }, (_, i) => client.request('echo', [Buffer.from(`request ${i}`)]));
      await fake.received(1000);
      assert.equal(new Set(fake.requests.map((r) => r.identity.toString('hex'))).size, 1, 'one client socket');
      assert.equal(new Set(fake.requests.map((r) => r.tag.toString('hex'))).size, 1000, 'a tag of its own per request');
      for (let i = 999; i >= 0; i--) await fake.reply(i, [Buffer.from(`reply to ${fake.requests[i]!.body[0]}`)]);
      assert.deepEqual(
        (await Promise.all(replies)).map((r) => String(r[0])),
        Array.from({ length: 1000 }, (_, i) => `reply to request ${i}`),
      );
      assert.equal(client.inFlight, 0);
    });

    it('keeps the PARTIAL replies of interleaved streams apart', async () => {
      const collect = async (name: string) => {
        const chunks: string[] = [];
        for await (const chunk of client.stream('progress', [Buffer.from(name)])) chunks.push(`${chunk.final ? 'final' : 'partial'} ${chunk.body[0]}`);
        return chunks;
      };
      const a = collect('a');
      const b = collect('b');
      await fake.received(2);
      const [ia, ib] = fake.requests[0]!.body[0]!.toString() === 'a' ? [0, 1] : [1, 0];
      await fake.reply(ia, [Buffer.from('a1')], false);
      await fake.reply(ib, [Buffer.from('b1')], false);
      await fake.reply(ia, [Buffer.from('a2')], false);
      await fake.reply(ib, [Buffer.from('b-done')]);
      await fake.reply(ia, [Buffer.from('a-done')]);
      assert.deepEqual(await a, ['partial a1', 'partial a2', 'final a-done']);
      assert.deepEqual(await b, ['partial b1', 'final b-done']);
    });

    it('times out one request while another on the same socket is answered', async () => {
      const silent = client.request('echo', [Buffer.from('never answered')], { timeoutMs: 200 });
      const answered = client.request('echo', [Buffer.from('answered')], { timeoutMs: 5000 });
      await fake.received(2);
      const index = fake.requests.findIndex((r) => String(r.body[0]) === 'answered');
      assert.equal(await errorCode(silent), 'TIMEOUT');
      await fake.reply(index, [Buffer.from('ok')]);
      assert.equal(String((await answered)[0]), 'ok');
    });

    it('resends a timed-out request under a new tag and drops the late reply to the first one', async () => {
      const reply = client.request('echo', [Buffer.from('x')], { timeoutMs: 300, retries: 1 });
      await fake.received(2); // the first attempt timed out, the second arrived
      assert.notDeepEqual(fake.requests[0]!.tag, fake.requests[1]!.tag);
      await fake.reply(0, [Buffer.from('late reply to attempt 1')]);
      await fake.reply(1, [Buffer.from('reply to attempt 2')]);
      assert.equal(String((await reply)[0]), 'reply to attempt 2');
    });

    it('cancels one request by its signal; the others still get their replies', async () => {
      const controller = new AbortController();
      const canceled = client.request('echo', [Buffer.from('canceled')], { signal: controller.signal });
      const kept = client.request('echo', [Buffer.from('kept')]);
      await fake.received(2);
      controller.abort();
      assert.equal(await errorCode(canceled), 'CANCELED');
      for (const i of [0, 1]) await fake.reply(i, [Buffer.from(`reply ${fake.requests[i]!.body[0]}`)]);
      assert.equal(String((await kept)[0]), 'reply kept');
      assert.equal(client.inFlight, 0);
    });

    it('rejects every request in flight with CANCELED on close, and close twice is harmless', async () => {
      const pending = [client.request('echo', [Buffer.from('1')]), client.request('echo', [Buffer.from('2')])];
      await fake.received(2);
      await Promise.all([client.close(), client.close()]);
      assert.deepEqual(await Promise.all(pending.map(errorCode)), ['CANCELED', 'CANCELED']);
      assert.equal(await errorCode(client.request('echo', [])), 'CANCELED');
    });

    it('ignores replies that are not for it: unknown tags, untagged replies, garbage', async () => {
      const reply = client.request('echo', [Buffer.from('x')]);
      await fake.received(1);
      const { identity, service } = fake.requests[0]!;
      await fake.socket.send([identity, ...encodeClientReply(2, service, [Buffer.from('unknown tag')], true, Buffer.from([9, 9, 9, 9]))]);
      await fake.socket.send([identity, ...encodeClientReply(2, service, [Buffer.from('untagged')])]);
      await fake.socket.send([identity, Buffer.from('garbage')]);
      await fake.reply(0, [Buffer.from('the real one')]);
      assert.equal(String((await reply)[0]), 'the real one');
    });

    it('refuses past maxInFlight with OVERLOADED at once', async () => {
      await client.close();
      client = new ZerveClient({ broker: fake.endpoint, maxInFlight: 2 });
      const first = [client.request('echo', []), client.request('echo', [])];
      assert.equal(await errorCode(client.request('echo', [])), 'OVERLOADED');
      await fake.received(2);
      await Promise.all([fake.reply(0, []), fake.reply(1, [])]);
      await Promise.all(first);
    });
  });

  describe('through the broker', () => {
    let broker: Broker;
    let worker: WorkerConnection;
    const seenByWorker: Buffer[][] = [];

    beforeEach(async () => {
      broker = await startBroker({ maxQueuedPerService: 5000 });
      const ready = nextWorker(broker);
      worker = new WorkerConnection(
        ['echo'],
        async (body) => {
          seenByWorker.push(body);
          await sleep(Math.random() * 20); // replies leave in another order than requests came
          return body;
        },
        { connect: broker.backendEndpoint, capacity: 64, heartbeatIntervalMs: 200 },
      );
      worker.start();
      await ready;
    });

    afterEach(async () => {
      seenByWorker.length = 0;
      await worker.close();
      await broker.close();
    });

    it('answers 2,000 concurrent requests from one client, each with its own body', async () => {
      const client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 10_000 });
      try {
        const replies = await Promise.all(Array.from({ length: 2000 }, (_, i) => client.request('echo', [Buffer.from(String(i))])));
        assert.deepEqual(replies.map((r) => String(r[0])), Array.from({ length: 2000 }, (_, i) => String(i)));
      } finally {
        await client.close();
      }
    });

    it('returns the tag with every reply, never shows it to the worker, and answers plain MDP/0.2 clients untagged', async () => {
      const tagged = new zmq.Dealer({ linger: 0 });
      const plain = new zmq.Dealer({ linger: 0 });
      try {
        tagged.connect(broker.frontendEndpoint);
        plain.connect(broker.frontendEndpoint);
        const tag = Buffer.from('my-tag');
        await tagged.send(encodeClientRequest('echo', [Buffer.from('tagged body')], tag));
        const reply = await tagged.receive();
        assert.equal(reply.length, 5);
        assert.deepEqual([...reply[1]!], [ClientCommand.FINAL | CLIENT_TAGGED]);
        assert.deepEqual([reply[0], ...reply.slice(2)].map(String), [String(MDPC02), 'my-tag', 'echo', 'tagged body']);
        await plain.send(encodeClientRequest('echo', [Buffer.from('plain body')]));
        const plainReply = parseClientReply(await plain.receive());
        assert.equal(plainReply.tag, undefined);
        assert.deepEqual(plainReply.body.map(String), ['plain body']);
        await tagged.send(encodeClientRequest('mmi.service', [Buffer.from('echo')], tag));
        const mmi = parseClientReply(await tagged.receive());
        assert.deepEqual([String(mmi.tag), String(mmi.body[0])], ['my-tag', '200']);
        assert.deepEqual(seenByWorker.map((b) => b.map(String)), [['tagged body'], ['plain body']], 'the worker sees the body only');
      } finally {
        tagged.close();
        plain.close();
      }
    });

    it('drops tagged requests with an empty or over-long tag or no service, and keeps serving', async () => {
      const hostile = new zmq.Dealer({ linger: 0 });
      const client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 5000 });
      try {
        hostile.connect(broker.frontendEndpoint);
        const command = Buffer.from([ClientCommand.REQUEST | CLIENT_TAGGED]);
        await hostile.send([MDPC02, command, Buffer.alloc(0), Buffer.from('echo'), Buffer.from('empty tag')]);
        await hostile.send([MDPC02, command, Buffer.alloc(256, 1), Buffer.from('echo'), Buffer.from('long tag')]);
        await hostile.send([MDPC02, command, Buffer.from('tag-without-service')]);
        assert.equal(String((await client.request('echo', [Buffer.from('still served')]))[0]), 'still served');
        hostile.receiveTimeout = 300;
        await assert.rejects(hostile.receive(), (err: { code?: string }) => err.code === 'EAGAIN', 'no reply to any of them');
        assert.equal(seenByWorker.length, 1, 'none of them reached the worker');
      } finally {
        hostile.close();
        await client.close();
      }
    });
  });
});
