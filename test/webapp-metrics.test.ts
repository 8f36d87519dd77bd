import assert from 'node:assert/strict';
import type { Broker } from '../broker/broker.ts';
import { logger } from '../shared/logger.ts';
import { METRICS } from '../shared/metrics.ts';
import { WebApp } from '../webapp/web-app.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';
import { startBroker } from './helpers/cluster.ts';
import { scrape } from './helpers/prometheus-scrape.ts';

if (process.env.ZERVE_LOG_LEVEL === undefined) logger.level = 'silent';
const DURATION = METRICS.httpRequestDuration.name;

describe('web app metrics', () => {
  let broker: Broker;
  let web: WebApp;
  let url: string;

  beforeEach(async () => {
    broker = await startBroker();
    web = new WebApp({ broker: broker.frontendEndpoint, http: 0, probeTimeoutMs: 500, requestTimeoutMs: 2000 }, testLogger);
    url = await web.start();
  });

  afterEach(async () => {
    await web.close();
    await broker.close();
  });

  it('times every request by route pattern and status, never by raw URL', async () => {
    for (let i = 0; i < 2; i++) assert.equal((await fetch(`${url}healthz`)).status, 200);
    assert.equal((await fetch(`${url}api/jobs/j1`)).status, 503); // no jobs service
    assert.equal((await fetch(`${url}api/jobs/j2`)).status, 503);
    assert.equal((await fetch(`${url}no/such/page`)).status, 404);
    assert.equal((await fetch(`${url}index.html`)).status, 200);
    const m = await scrape(`${url}metrics`);
    assert.equal(m.types.get(DURATION), 'histogram');
    assert.equal(m.count(DURATION, { route: '/healthz', status: '200' }), 2);
    assert.equal(m.count(DURATION, { route: '/api/jobs/:id', status: '503' }), 2, 'one series for every job id');
    assert.equal(m.count(DURATION, { route: 'unmatched', status: '404' }), 1);
    assert.equal(m.count(DURATION, { route: 'static', status: '200' }), 1);
    assert.ok(!m.samples.some((s) => s.labels.route?.includes('j1')));
    assert.ok(m.types.has('process_resident_memory_bytes'), 'default process metrics');
  });

  it('labels /v2 answers, errors included, by their route pattern', async () => {
    assert.equal((await fetch(`${url}v2/health/live`)).status, 200);
    for (const model of ['a', 'b']) assert.equal((await fetch(`${url}v2/models/${model}/infer`, { method: 'POST', body: '{"inputs": [' })).status, 400);
    assert.equal((await fetch(`${url}v2/models/a/versions/1/ready`)).status, 503); // no worker
    assert.equal((await fetch(`${url}v2/nothing/here`)).status, 404);
    const m = await scrape(`${url}metrics`);
    assert.equal(m.count(DURATION, { route: '/v2/health/live', status: '200' }), 1);
    assert.equal(m.count(DURATION, { route: '/v2/models/:model/infer', status: '400' }), 2);
    assert.equal(m.count(DURATION, { route: '/v2/models/:model/versions/:version/ready', status: '503' }), 1);
    assert.equal(m.count(DURATION, { route: 'unmatched', status: '404' }), 1);
    assert.ok(!m.samples.some((s) => s.labels.route?.startsWith('/v2/v2')));
  });
});
