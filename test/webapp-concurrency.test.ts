import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { fixtureImage } from './helpers/cluster.ts';
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

describe('web app under 1,000 concurrent uploads', function () {
  this.timeout(240_000);
  let cluster: WebCluster;

  beforeEach(async () => {
    // A deadline of 2 minutes: 1,000 classifications on one single-threaded worker take about 30 s on a
    // busy 2-core machine; the point here is that they are queued and answered, not how fast.
    cluster = await startWebCluster({ requestTimeoutMs: 120_000 });
  });
  afterEach(async () => {
    await cluster?.close();
  });

  it('queues 1,000 concurrent uploads at the broker and answers every one within its deadline, each with its own image', async () => {
    const agent = new Agent({ keepAlive: false, maxSockets: UPLOADS });
    try {
      // Each request skips the result cache, so every one is queued at the broker and classified.
      const url = new URL('/api/classify?model=squeezenet&topk=1&cache=false', cluster.url);
      const answers = await Promise.all(
        Array.from({ length: UPLOADS }, (_, i) => {
          const image = IMAGES[i % IMAGES.length]!;
          return post(url, agent, image.bytes, image.type).then((answer) => ({ image, answer }));
        }),
      );
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
    }
  });
});
