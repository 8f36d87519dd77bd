import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { ZerveClient } from '../shared/client.ts';
import { fixtureImage } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';
import { startWebCluster, type WebCluster } from './fixtures/webapp-cluster.ts';

const UPLOADS = 1000;
const IMAGES = [
  { name: 'kitten.png', type: 'image/png', label: 'tabby, tabby cat' },
  { name: 'fish.png', type: 'image/png', label: 'tench, Tinca tinca' },
  { name: 'kitten-1600.jpg', type: 'image/jpeg', label: 'tabby, tabby cat' },
].map((image) => ({ ...image, bytes: readFileSync(fixtureImage(image.name)) }));

/** One POST on its own connection (the agent keeps none back), answered with status and parsed body. */
function post(url: URL, agent: Agent, body: Buffer, type: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': type, 'content-length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) }));
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end(body);
  });
}

describe('web app throughput: queueing at the broker, the result cache', function () {
  this.timeout(240_000);
  let cluster: WebCluster;

  before(async () => {
    // A deadline of 2 minutes: 1,000 classifications on one single-threaded worker take about 30 s on a
    // busy 2-core machine; the point here is that they are queued and answered, not how fast.
    cluster = await startWebCluster({ requestTimeoutMs: 120_000 });
  });
  after(async () => {
    await cluster?.close();
  });

  it('queues 1,000 concurrent uploads at the broker and answers every one within its deadline, each with its own image', async () => {
    const agent = new Agent({ keepAlive: false, maxSockets: UPLOADS });
    const control = new ZerveClient({ broker: cluster.broker.frontendEndpoint });
    try {
      // Each request skips the result cache, so every one is queued at the broker and classified.
      const url = new URL('/api/classify?model=squeezenet&topk=1&cache=false', cluster.url);
      const uploads = Promise.all(
        Array.from({ length: UPLOADS }, (_, i) => {
          const image = IMAGES[i % IMAGES.length]!;
          return post(url, agent, image.bytes, image.type).then((answer) => ({ image, answer }));
        }),
      );
      uploads.catch(() => undefined); // awaited below; a failure there fails the test
      // The web app passes them on at once: they wait in the broker's queue, not in the web app.
      const queued = async () => (await control.services()).find((s) => s.name === 'classify.squeezenet')?.queued ?? 0;
      await eventually('100 uploads waiting in the broker queue of classify.squeezenet', async () => (await queued()) >= 100, 120_000);
      const answers = await uploads;
      assert.equal(await queued(), 0, 'the broker queue drained');
      const failed = answers.filter(({ answer }) => answer.status !== 200);
      assert.deepEqual(failed.slice(0, 3).map(({ answer }) => answer.body), [], `${failed.length} of ${UPLOADS} failed`);
      for (const { image, answer } of answers) {
        assert.equal(answer.body.model, 'squeezenet');
        assert.equal(answer.body.predictions.length, 1);
        assert.equal(answer.body.predictions[0].label, image.label, image.name);
        assert.equal(answer.body.cached, undefined, 'classified, not served from the cache');
        assert.ok(answer.body.timings.httpMs >= answer.body.timings.totalMs);
      }
    } finally {
      agent.destroy();
      await control.close();
    }
  });

  it('answers a repeated upload from the result cache with cached: true, and afresh with cache=false', async () => {
    const fish = IMAGES[1]!;
    const post = (query: string) =>
      fetch(new URL(`/api/classify?model=squeezenet&topk=2${query}`, cluster.url), {
        method: 'POST',
        body: new Uint8Array(fish.bytes),
        headers: { 'content-type': fish.type },
      }).then(async (res) => ({ status: res.status, body: (await res.json()) as any }));
    const first = await post('');
    const second = await post('');
    const skipped = await post('&cache=false');
    assert.deepEqual([first.status, second.status, skipped.status], [200, 200, 200]);
    assert.equal(second.body.cached, true);
    assert.deepEqual(second.body.predictions, first.body.predictions);
    assert.equal(second.body.predictions[0].label, fish.label);
    assert.equal(second.body.timings.inferenceMs, undefined, 'no inference for a cached answer');
    assert.ok(second.body.timings.hashMs >= 0 && second.body.timings.httpMs >= second.body.timings.totalMs);
    assert.equal(skipped.body.cached, undefined);
    assert.ok(skipped.body.timings.inferenceMs > 0);
    assert.deepEqual(skipped.body.predictions.map((p: { index: number }) => p.index), first.body.predictions.map((p: { index: number }) => p.index));
  });

  it('refuses a cache option that is not a boolean with 400 BAD_REQUEST', async () => {
    const res = await fetch(new URL('/api/classify?model=squeezenet&cache=maybe', cluster.url), {
      method: 'POST',
      body: new Uint8Array(IMAGES[0]!.bytes),
      headers: { 'content-type': 'image/png' },
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as any).error.code, 'BAD_REQUEST');
  });
});
