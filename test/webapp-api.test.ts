import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { readFileSync } from 'node:fs';
import { Broker } from '../broker/broker.ts';
import type { JobStatus } from '../shared/jobs.ts';
import { WebApp } from '../webapp/web-app.ts';
import { fixtureImage, startBroker } from './helpers/cluster.ts';
import { assertError, form, readEvents } from './helpers/http.ts';
import { SAMPLES, faultEvents, startWebCluster, testLogger, type WebCluster } from './fixtures/webapp-cluster.ts';
import { call, checkResponse } from './fixtures/webapp-openapi-check.ts';

const TABBY = 'tabby, tabby cat';
const kitten = readFileSync(fixtureImage('kitten.png'));
const bigKitten = readFileSync(fixtureImage('kitten-1600.jpg'));

function png(body: Buffer): RequestInit {
  return { method: 'POST', body: new Uint8Array(body), headers: { 'content-type': 'image/png' } };
}

/** An image as the page uploads it. */
const imageForm = (image: Buffer | string, name = 'kitten.png', field = 'image') => form({ field, name, type: 'image/png', body: image });

describe('web app HTTP API', function () {
  this.timeout(30_000);
  let cluster: WebCluster;
  let url: string;
  let extra: WebApp | undefined;
  let extraBroker: Broker | undefined;

  // One cluster for the suite: every test here only reads from it (tests that restart parts have their own).
  before(async () => {
    cluster = await startWebCluster();
    url = cluster.url;
  });
  after(async () => {
    await cluster?.close();
  });
  afterEach(async () => {
    await extra?.close();
    await extraBroker?.close();
    extra = undefined;
    extraBroker = undefined;
  });

  /** A second web app on the same cluster with other options (closed after the test). */
  async function webWith(options: ConstructorParameters<typeof WebApp>[0]): Promise<string> {
    extra = new WebApp({ broker: cluster.broker.frontendEndpoint, http: 0, samples: SAMPLES, ...options }, testLogger);
    return extra.start();
  }

  describe('answers', () => {
    it('says it is up and ready', async () => {
      assert.deepEqual((await call(url, '/healthz')).body, { status: 'ok' });
      const ready = await call(url, '/readyz');
      assert.equal(ready.status, 200);
      assert.equal(ready.body.ready, true);
      assert.ok(ready.body.models.includes('squeezenet'));
      assert.equal(ready.body.jobs, true);
    });

    it('lists the models with their inputs and label counts, and the samples', async () => {
      const { body } = await call(url, '/api/info');
      const squeezenet = body.models.find((m: { name: string }) => m.name === 'squeezenet');
      assert.equal(squeezenet.labels, 1000);
      assert.deepEqual(squeezenet.versions, ['1']);
      assert.equal(squeezenet.input.width, 224);
      assert.ok(squeezenet.workers >= 1);
      assert.deepEqual(
        body.samples.map((s: { name: string }) => s.name),
        ['digit.png', 'fish.png', 'kitten-1600.jpg', 'kitten.png'],
      );
      const sample = await fetch(new URL(body.samples[3].url, url));
      assert.equal(sample.headers.get('content-type'), 'image/png');
      assert.deepEqual(Buffer.from(await sample.arrayBuffer()), kitten);
    });

    it('classifies kitten.png as a tabby from the raw image bytes', async () => {
      const { status, body } = await call(url, '/api/classify?model=squeezenet&topk=3', png(kitten));
      assert.equal(status, 200);
      assert.equal(body.model, 'squeezenet');
      assert.equal(body.predictions.length, 3);
      assert.equal(body.predictions[0].label, TABBY);
      assert.ok(body.timings.httpMs >= body.timings.totalMs);
    });

    it('classifies a multipart upload and a sample named in the query', async () => {
      const upload = await call(url, '/api/classify?model=squeezenet', imageForm(bigKitten, 'kitten-1600.jpg'));
      assert.equal(upload.body.predictions[0].label, TABBY);
      const sample = await call(url, '/api/classify?model=squeezenet&sample=fish.png', { method: 'POST' });
      assert.equal(sample.body.predictions[0].label, 'tench, Tinca tinca');
    });

    it('answers the same JSON as the ZeroMQ reply, but for the HTTP timing', async () => {
      // Both classified (no result cache), so the two answers have the same fields.
      const { body } = await call(url, '/api/classify?model=squeezenet&topk=5&cache=false', png(kitten));
      const { ZerveClient } = await import('../shared/client.ts');
      const client = new ZerveClient({ broker: cluster.broker.frontendEndpoint });
      try {
        const direct = await client.classify('squeezenet', kitten, { topk: 5, cache: false });
        assert.deepEqual(Object.keys(body).sort(), Object.keys(direct).sort());
        assert.deepEqual(body.predictions, direct.predictions);
      } finally {
        await client.close();
      }
    });
  });

  describe('job tickets', () => {
    it('classifies through a ticket: 202 at once, events, then the result', async () => {
      const submitted = await call(url, '/api/jobs?model=squeezenet&topk=2', png(kitten));
      assert.equal(submitted.status, 202);
      assert.equal(submitted.headers.get('location'), submitted.body.url);
      const events = await readEvents(new URL(submitted.body.eventsUrl, url).href);
      const done = events.at(-1)!;
      assert.equal(done.event, 'done');
      checkResponse('GET', submitted.body.url, 200, 'application/json', done.data);
      assert.equal(done.data.state, 'succeeded');
      assert.equal(done.data.result.predictions[0].label, TABBY);
      assert.ok(events.some((e) => e.event === 'state'));
      const status = await call<JobStatus>(url, submitted.body.url);
      assert.equal(status.body.state, 'succeeded');
      assert.deepEqual(status.body.result, done.data.result);
    });

    it('records a failed job with its error code', async () => {
      const submitted = await call(url, '/api/jobs?model=squeezenet', png(Buffer.from('not an image')));
      const events = await readEvents(new URL(submitted.body.eventsUrl, url).href);
      assert.equal(events.at(-1)!.data.state, 'failed');
      assert.equal(events.at(-1)!.data.failure.code, 'BAD_IMAGE');
    });

    it('cancels a running job with DELETE', async () => {
      const submitted = await call(url, '/api/jobs?model=fault&version=sleep', png(kitten));
      const canceled = await call<JobStatus>(url, submitted.body.url, { method: 'DELETE' });
      assert.equal(canceled.status, 200);
      assert.equal(canceled.body.state, 'canceled');
      assert.equal(canceled.body.failure?.code, 'CANCELED');
      const events = await readEvents(new URL(submitted.body.eventsUrl, url).href);
      assert.equal(events.at(-1)!.data.state, 'canceled');
    });

    it('answers a resubmission with the same Idempotency-Key with the first ticket', async () => {
      const submit = (key: string) => {
        const init = png(kitten);
        return call(url, '/api/jobs?model=fault&version=sleep', { ...init, headers: { ...(init.headers as Record<string, string>), 'idempotency-key': key } });
      };
      const first = await submit('resubmit-1');
      const again = await submit('resubmit-1');
      const other = await submit('resubmit-2');
      assert.equal(first.status, 202);
      assert.equal(again.body.id, first.body.id, 'the same key: the same job');
      assert.notEqual(other.body.id, first.body.id, 'another key: another job');
      for (const job of [first, other]) assert.equal((await call<JobStatus>(url, job.body.url, { method: 'DELETE' })).body.state, 'canceled');
    });

    it('refuses a malformed Idempotency-Key with 400 BAD_REQUEST', async () => {
      for (const key of ['has space', 'x'.repeat(129)]) {
        const init = png(kitten);
        assertError(await call(url, '/api/jobs?model=squeezenet', { ...init, headers: { ...(init.headers as Record<string, string>), 'idempotency-key': key } }), 400, 'BAD_REQUEST');
      }
    });

    it('answers 404 UNKNOWN_JOB for an unknown ticket, never "pending"', async () => {
      const id = '00000000-0000-0000-0000-000000000000';
      assertError(await call(url, `/api/jobs/${id}`), 404, 'UNKNOWN_JOB');
      assertError(await call(url, `/api/jobs/${id}`, { method: 'DELETE' }), 404, 'UNKNOWN_JOB');
      assertError(await call(url, `/api/jobs/${id}/events`), 404, 'UNKNOWN_JOB');
    });
  });

  describe('errors', () => {
    it('maps bad requests to 400 BAD_REQUEST', async () => {
      assertError(await call(url, '/api/classify', png(kitten)), 400, 'BAD_REQUEST'); // no model
      assertError(await call(url, '/api/classify?model=squeezenet&topk=0', png(kitten)), 400, 'BAD_REQUEST');
      assertError(await call(url, '/api/classify?model=squeezenet&topk=many', png(kitten)), 400, 'BAD_REQUEST');
      assertError(await call(url, '/api/classify?model=a/b', png(kitten)), 400, 'BAD_REQUEST');
      assertError(await call(url, '/api/classify?model=squeezenet', { method: 'POST' }), 400, 'BAD_REQUEST'); // no image
      assertError(
        await call(url, '/api/classify?model=squeezenet', { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } }),
        400,
        'BAD_REQUEST',
      );
      assertError(await call(url, '/api/classify?model=squeezenet', imageForm(kitten, 'k.png', 'photo')), 400, 'BAD_REQUEST');
      assertError(
        await call(url, '/api/classify?model=squeezenet', {
          method: 'POST',
          body: '--xyz\r\ngarbage',
          headers: { 'content-type': 'multipart/form-data; boundary=xyz' },
        }),
        400,
        'BAD_REQUEST',
      );
      assertError(await call(url, '/api/classify?model=squeezenet&sample=nope.png', { method: 'POST' }), 400, 'BAD_REQUEST');
      assertError(await call(url, '/api/classify?model=squeezenet&sample=kitten.png', png(kitten)), 400, 'BAD_REQUEST');
    });

    it('maps undecodable images to 400 BAD_IMAGE', async () => {
      assertError(await call(url, '/api/classify?model=squeezenet', png(Buffer.from('corrupt'))), 400, 'BAD_IMAGE');
      assertError(await call(url, '/api/classify?model=squeezenet', png(kitten.subarray(0, 2000))), 400, 'BAD_IMAGE');
      assertError(await call(url, '/api/classify?model=squeezenet', imageForm(Buffer.alloc(0))), 400, 'BAD_IMAGE');
    });

    it('maps unknown models and versions to 404 UNKNOWN_MODEL', async () => {
      assertError(await call(url, '/api/classify?model=nope', png(kitten)), 404, 'UNKNOWN_MODEL');
      assertError(await call(url, '/api/classify?model=squeezenet&version=99', png(kitten)), 404, 'UNKNOWN_MODEL');
      assertError(await call(url, '/api/jobs?model=nope', png(kitten)), 404, 'UNKNOWN_MODEL');
    });

    it('maps OVERLOADED and NO_WORKERS to 503 with Retry-After', async () => {
      assertError(await call(url, '/api/classify?model=fault&version=OVERLOADED', png(kitten)), 503, 'OVERLOADED');
      assertError(await call(url, '/api/classify?model=fault&version=NO_WORKERS', png(kitten)), 503, 'NO_WORKERS');
      const small = await webWith({ maxInFlight: 1, requestTimeoutMs: 5000 });
      const received = once(faultEvents, 'request');
      const slow = call(small, '/api/classify?model=fault&version=sleep', png(kitten));
      await received; // the only slot is taken now; the first request ends as the fault worker wakes (TIMEOUT)
      assertError(await call(small, '/api/classify?model=squeezenet', png(kitten)), 503, 'OVERLOADED');
      assertError(await slow, 504, 'TIMEOUT');
    });

    it('maps a cluster without inference workers to 503 NO_WORKERS', async () => {
      extraBroker = await startBroker();
      extra = new WebApp({ broker: extraBroker.frontendEndpoint, http: 0 }, testLogger);
      const empty = await extra.start();
      assertError(await call(empty, '/api/classify?model=squeezenet', png(kitten)), 503, 'NO_WORKERS');
      const ready = await call(empty, '/readyz');
      assert.equal(ready.status, 503);
      assert.equal(ready.body.ready, false);
      assertError(await call(empty, '/api/jobs/abc'), 503, 'NO_WORKERS'); // no jobs service
    });

    it('maps a reply that takes too long to 504 TIMEOUT', async () => {
      const impatient = await webWith({ requestTimeoutMs: 300 });
      assertError(await call(impatient, '/api/classify?model=fault&version=sleep', png(kitten)), 504, 'TIMEOUT');
    });

    it('maps uploads over the limit to 413 IMAGE_TOO_LARGE, raw or multipart', async () => {
      const strict = await webWith({ maxUploadBytes: 64 * 1024 });
      assertError(await call(strict, '/api/classify?model=squeezenet', png(bigKitten)), 413, 'IMAGE_TOO_LARGE');
      assertError(await call(strict, '/api/classify?model=squeezenet', imageForm(bigKitten)), 413, 'IMAGE_TOO_LARGE');
      assert.equal((await call(strict, '/api/classify?model=squeezenet', png(kitten))).status, 200, 'under the limit still works');
    });

    it('refuses an oversized upload while it streams, before it has all arrived', async () => {
      const strict = new URL(await webWith({ maxUploadBytes: 256 * 1024 }));
      const total = 64 * 1024 * 1024;
      const chunk = Buffer.alloc(64 * 1024, 1);
      let sent = 0;
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          { host: strict.hostname, port: strict.port, path: '/api/classify?model=squeezenet', method: 'POST', headers: { 'content-type': 'image/jpeg' } },
          (res) => {
            res.resume();
            resolve(res.statusCode!);
            req.destroy();
          },
        );
        req.on('error', reject);
        const pump = () => {
          while (sent < total) {
            sent += chunk.length;
            if (!req.write(chunk)) {
              req.once('drain', pump);
              return;
            }
          }
          req.end();
        };
        pump();
      });
      assert.equal(status, 413);
      assert.ok(sent < total, `answered after ${sent} of ${total} bytes`);
    });

    it('maps unknown routes and samples to 404 NOT_FOUND and malformed paths to 400, and never answers 500', async () => {
      // Not in the OpenAPI document (that is the point), so fetched without its check.
      for (const path of ['/api/nope', '/api/classify' /* GET on a POST route */]) {
        const res = await fetch(new URL(path, url));
        assert.equal(res.status, 404);
        assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
      }
      assertError(await call(url, '/api/samples/no-such-sample.png'), 404, 'NOT_FOUND');
      assert.equal((await fetch(new URL('/api/jobs/%E0%A4%A', url))).status, 400);
      const hostile: [string, RequestInit][] = [
        ['/api/classify?model=squeezenet&topk=1&topk=2', png(kitten)],
        ['/api/classify?model=' + 'm'.repeat(5000), png(kitten)],
        ['/api/classify?model=squeezenet&version=../../etc', png(kitten)],
        ['/api/classify?model=squeezenet&sample=../package.json', { method: 'POST' }],
        ['/api/samples/..%2Fpackage.json', {}],
        ['/api/jobs/' + 'x'.repeat(300), {}],
        ['/api/classify?model=squeezenet', { method: 'POST', body: new Uint8Array(kitten), headers: { 'content-type': 'multipart/form-data' } }],
        ['/api/classify?model=squeezenet', { method: 'POST', body: new Uint8Array(kitten), headers: { 'content-type': 'application/json' } }],
        ['/api/jobs?model=squeezenet', { method: 'POST', body: new Uint8Array(0), headers: { 'content-type': 'image/png' } }],
      ];
      for (const [path, init] of hostile) {
        const res = await fetch(new URL(path, url), init);
        assert.ok(res.status >= 400 && res.status < 500, `${path} answered ${res.status}`);
        const body = (await res.json()) as { error: { code: string } };
        assert.ok(body.error.code, `${path} answered a coded error`);
      }
    });
  });
});
