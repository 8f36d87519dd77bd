import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Broker } from '../broker/broker.ts';
import type { JobStatus } from '../shared/jobs.ts';
import type { DatasetSummary, ExperimentDetail, ExperimentSummary, RunRecord, TrainProgressMessage, TrainResultMessage } from '../shared/training.ts';
import { WebApp } from '../webapp/web-app.ts';
import type { WorkerConnection } from '../shared/worker-connection.ts';
import { startBroker } from './helpers/cluster.ts';
import { assertError, form, readEvents } from './helpers/http.ts';
import { makePng, makeTarGz, makeZip } from './fixtures/training-archives.ts';
import { call } from './fixtures/webapp-openapi-check.ts';
import { startFaultWorker, testLogger } from './fixtures/webapp-cluster.ts';
import { halvesZip, startTrainingCluster, type TrainingCluster } from './fixtures/webapp-training-cluster.ts';

function raw(body: Buffer, type = 'application/zip'): RequestInit {
  return { method: 'POST', body: new Uint8Array(body), headers: { 'content-type': type } };
}

/** A dataset archive as the page uploads it. */
const archiveForm = (body: Buffer, field = 'archive', name = 'halves.zip') => form({ field, name, type: 'application/zip', body });

function json(body: unknown): RequestInit {
  return { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
}

describe('web app training API', function () {
  this.timeout(60_000);
  let cluster: TrainingCluster;
  let url: string;
  let halves: DatasetSummary;
  let fault: WorkerConnection;
  let extra: WebApp | undefined;
  let extraBroker: Broker | undefined;

  // One cluster for the suite (a training worker process takes seconds to start); the dataset is added once.
  before(async () => {
    cluster = await startTrainingCluster();
    url = cluster.url;
    // A served model (classify.fault), so that an unknown backbone is UNKNOWN_MODEL rather than NO_WORKERS.
    const started = startFaultWorker(cluster.broker);
    fault = started.connection;
    await started.ready;
    const added = await call<DatasetSummary>(url, '/api/datasets?name=halves', archiveForm(await halvesZip()));
    assert.equal(added.status, 201, JSON.stringify(added.body));
    halves = added.body;
  });
  after(async () => {
    await fault?.close();
    await cluster?.close();
  });
  afterEach(async () => {
    await extra?.close();
    await extraBroker?.close();
    extra = undefined;
    extraBroker = undefined;
  });

  describe('datasets', () => {
    it('adds a zip sent as a multipart form and answers its manifest summary, skipped files with reasons', () => {
      assert.equal(halves.name, 'halves');
      assert.match(halves.id, /^[0-9a-f]{64}$/);
      assert.equal(halves.source, 'zip');
      assert.deepEqual(halves.classes, ['bottom', 'left', 'right', 'top']);
      assert.deepEqual(halves.counts.left, { train: 10, test: 0 });
      assert.equal(halves.images, 40);
      const reasons = Object.fromEntries(halves.skipped.map((s) => [s.path, s.reason]));
      assert.deepEqual(reasons, { 'halves/left/notes.txt': 'not-an-image', 'halves/.DS_Store': 'hidden' });
    });

    it('adds a tar.gz sent as the raw body, and lists every dataset with mnist first', async () => {
      const entries = [];
      for (let i = 0; i < 3; i++) {
        entries.push({ name: `red/${i}.png`, data: await makePng(500 + i, [220, 20, 20]) });
        entries.push({ name: `blue/${i}.png`, data: await makePng(600 + i, [20, 20, 220]) });
        entries.push({ name: `test/red/t${i}.png`, data: await makePng(700 + i, [220, 20, 20]) });
        entries.push({ name: `test/blue/t${i}.png`, data: await makePng(800 + i, [20, 20, 220]) });
      }
      const added = await call<DatasetSummary>(url, '/api/datasets', raw(await makeTarGz(entries), 'application/gzip'));
      assert.equal(added.status, 201);
      assert.equal(added.body.source, 'tar.gz');
      assert.equal(added.body.explicitTest, true);
      assert.deepEqual(added.body.counts.red, { train: 3, test: 3 });
      const list = await call<DatasetSummary[]>(url, '/api/datasets');
      assert.equal(list.status, 200);
      assert.equal(list.body[0]!.id, 'mnist');
      assert.deepEqual(list.body[0]!.classes, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
      const ids = list.body.map((d) => d.id);
      assert.ok(ids.includes(halves.id) && ids.includes(added.body.id), JSON.stringify(ids));
      assert.equal(list.body.find((d) => d.id === halves.id)!.name, 'halves');
    });

    it('refuses a corrupt archive, an unsafe one and one with a single class: BAD_DATASET', async () => {
      assertError(await call(url, '/api/datasets', raw(Buffer.from('PK\x03\x04 this is no zip at all'))), 400, 'BAD_DATASET');
      const png = await makePng(1, [10, 10, 10]);
      const unsafe = makeZip([
        { name: 'a/1.png', data: png },
        { name: 'b/2.png', data: await makePng(2, [200, 200, 200]) },
        { name: '../escape/3.png', data: png },
      ]);
      assertError(await call(url, '/api/datasets', raw(unsafe)), 400, 'BAD_DATASET');
      const single = makeZip([{ name: 'only/1.png', data: png }, { name: 'only/2.png', data: await makePng(3, [12, 12, 12]) }]);
      assertError(await call(url, '/api/datasets', raw(single)), 400, 'BAD_DATASET');
    });

    it('refuses a missing body, a wrong content type, a wrong form field and a bad name: BAD_REQUEST', async () => {
      assertError(await call(url, '/api/datasets', { method: 'POST' }), 400, 'BAD_REQUEST');
      assertError(await call(url, '/api/datasets', raw(Buffer.from('name,label\n'), 'text/csv')), 400, 'BAD_REQUEST');
      assertError(await call(url, '/api/datasets', archiveForm(await halvesZip(2), 'image')), 400, 'BAD_REQUEST');
      const bad = await call(url, '/api/datasets?name=no/slashes', raw(await halvesZip(2)));
      assertError(bad, 400, 'BAD_REQUEST');
      assert.deepEqual(bad.body.error.details.errors.map((e: { parameter: string }) => e.parameter), ['name']);
      assertError(await call(url, '/api/datasets', raw(Buffer.alloc(0))), 400, 'BAD_REQUEST');
    });

    it('answers a resend with the same Idempotency-Key with the first summary, without importing again', async () => {
      const keyed = (body: Buffer, key: string): RequestInit => ({ ...raw(body), headers: { 'content-type': 'application/zip', 'idempotency-key': key } });
      const first = await call<DatasetSummary>(url, '/api/datasets?name=keyed', keyed(await halvesZip(3), 'dataset-key-1'));
      assert.equal(first.status, 201, JSON.stringify(first.body));
      // Other bytes under the same key: the first answer, and the second archive is not imported.
      const other = await halvesZip(4);
      const again = await call<DatasetSummary>(url, '/api/datasets?name=other', keyed(other, 'dataset-key-1'));
      assert.equal(again.status, 201);
      assert.deepEqual(again.body, first.body);
      const fresh = await call<DatasetSummary>(url, '/api/datasets', keyed(await halvesZip(5), 'dataset-key-2'));
      assert.equal(fresh.status, 201);
      assert.notEqual(fresh.body.id, first.body.id);
      const ids = (await call<DatasetSummary[]>(url, '/api/datasets')).body.map((d) => d.id);
      assert.ok(ids.includes(first.body.id) && ids.includes(fresh.body.id), JSON.stringify(ids));
      // A dataset's id is the SHA-256 of its archive: the resent archive was never stored.
      assert.ok(!ids.includes(createHash('sha256').update(other).digest('hex')));
    });

    it('refuses a malformed Idempotency-Key with 400 BAD_REQUEST before importing anything', async () => {
      const archive = await halvesZip(6);
      const res = await call(url, '/api/datasets', { ...raw(archive), headers: { 'content-type': 'application/zip', 'idempotency-key': 'has space' } });
      assertError(res, 400, 'BAD_REQUEST');
      const ids = (await call<DatasetSummary[]>(url, '/api/datasets')).body.map((d) => d.id);
      assert.ok(!ids.includes(createHash('sha256').update(archive).digest('hex')));
    });

    it('refuses an archive over the upload limit while it streams in: 413', async () => {
      extra = new WebApp({ broker: cluster.broker.frontendEndpoint, http: 0, maxUploadBytes: 4096 }, testLogger);
      const small = await extra.start();
      assertError(await call(small, '/api/datasets', raw(await halvesZip())), 413, 'PAYLOAD_TOO_LARGE');
      assertError(await call(small, '/api/datasets', archiveForm(await halvesZip())), 413, 'PAYLOAD_TOO_LARGE');
    });
  });

  describe('bad training requests', () => {
    const base = { datasetId: 'halves', epochs: 2, export: { name: 'never' } };

    for (const [what, body] of [
      ['a body that is not an object', [1, 2]],
      ['no dataset', { epochs: 2 }],
      ['an unknown field', { ...base, learningRate: 0.1 }],
      ['an unknown fixed hyperparameter', { ...base, params: { dropout: 0.5 } }],
      ['a negative learning rate', { ...base, params: { learningRate: -1 } }],
      ['zero epochs', { ...base, epochs: 0 }],
      ['a bad model name', { ...base, export: { name: 'no spaces' } }],
      ['a model name with a dot, which the model repository would refuse after the training', { ...base, export: { name: 'pets.v2' } }],
      ['a search without a mode', { ...base, search: { params: ['hidden=16,32'] } }],
      ['a grid over a range', { ...base, search: { mode: 'grid', params: ['hidden=16:32'] } }],
      ['a search parameter that is not key=values', { ...base, search: { mode: 'grid', params: ['nonsense'] } }],
      ['an unknown search key', { ...base, search: { mode: 'random', params: ['dropout=0.1:0.5'], samples: 2 } }],
      ['a bad hidden layer spec in a grid', { ...base, search: { mode: 'grid', params: ['hidden=16,abc'] } }],
      ['a bad optimizer in a random search', { ...base, search: { mode: 'random', params: ['optimizer=adam,rmsprop'], samples: 20 } }],
      ['samples with a grid', { ...base, search: { mode: 'grid', params: ['hidden=16,32'], samples: 3 } }],
      ['a k-fold split of 1', { ...base, split: { kind: 'auto', folds: 1 } }],
      ['an explicit split on a dataset without test/', { ...base, split: { kind: 'explicit' } }],
      ['transfer without a backbone', { ...base, family: 'transfer' }],
      ['a backbone for the mlp family', { ...base, family: 'mlp', backbone: 'squeezenet' }],
      ['a webhook that is not http(s)', { ...base, notify: { webhook: 'ftp://example.com/hook' } }],
      ['an unknown notify field', { ...base, notify: { sms: '+100' } }],
    ] as const) {
      it(`answers 400 BAD_REQUEST to ${what}`, async () => {
        const res = await call(url, '/api/train', json(body));
        assertError(res, 400, 'BAD_REQUEST');
      });
    }

    it('answers 400 to a body that is not JSON, or not sent as JSON, and 413 to one over 64 KiB', async () => {
      assertError(await call(url, '/api/train', { method: 'POST', body: '{"datasetId":', headers: { 'content-type': 'application/json' } }), 400, 'BAD_REQUEST');
      assertError(await call(url, '/api/train', { method: 'POST', body: 'datasetId=halves', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 400, 'BAD_REQUEST');
      assertError(await call(url, '/api/train', { method: 'POST' }), 400, 'BAD_REQUEST');
      assertError(await call(url, '/api/train', json({ datasetId: 'halves', export: { name: 'x', description: 'a'.repeat(70_000) } })), 413, 'PAYLOAD_TOO_LARGE');
    });

    it('answers 400 BAD_REQUEST to a malformed Idempotency-Key, before anything is submitted', async () => {
      const request = json(base);
      const res = await call(url, '/api/train', { ...request, headers: { ...(request.headers as Record<string, string>), 'idempotency-key': 'has space' } });
      assertError(res, 400, 'BAD_REQUEST');
    });

    it('says which field is wrong', async () => {
      const res = await call(url, '/api/train', json({ ...base, search: { mode: 'grid', params: ['hidden=16,32'] }, epochs: 'many' }));
      assertError(res, 400, 'BAD_REQUEST');
      assert.deepEqual(res.body.error.details.errors.map((e: { parameter: string }) => e.parameter), ['epochs']);
      const point = await call(url, '/api/train', json({ ...base, search: { mode: 'grid', params: ['learningRate=0.01,-0.5'] } }));
      assertError(point, 400, 'BAD_REQUEST');
      assert.match(point.body.error.message, /learningRate/);
    });

    it('answers 404 UNKNOWN_DATASET to a dataset nobody added, and UNKNOWN_MODEL to a backbone nobody serves', async () => {
      assertError(await call(url, '/api/train', json({ ...base, datasetId: 'no-such-dataset' })), 404, 'UNKNOWN_DATASET');
      assertError(await call(url, '/api/train', json({ ...base, datasetId: 'f'.repeat(64) })), 404, 'UNKNOWN_DATASET');
      assertError(await call(url, '/api/train', json({ ...base, family: 'transfer', backbone: 'squeezenet-none' })), 404, 'UNKNOWN_MODEL');
    });

    it('answers 503 NO_WORKERS at once without a training worker or jobs service', async () => {
      extraBroker = await startBroker();
      extra = new WebApp({ broker: extraBroker.frontendEndpoint, http: 0, infoCacheMs: 100 }, testLogger);
      const lonely = await extra.start();
      // The lonely web app's client would wait its whole requestTimeoutMs (far past mocha's timeout)
      // for a service nobody offers; a 503 at all means it asked mmi.service first.
      assertError(await call(lonely, '/api/train', json(base)), 503, 'NO_WORKERS');
      assertError(await call(lonely, '/api/datasets'), 503, 'NO_WORKERS');
      assertError(await call(lonely, '/api/datasets', raw(await halvesZip(2))), 503, 'NO_WORKERS');
      assertError(await call(lonely, '/api/runs'), 503, 'NO_WORKERS');
      assertError(await call(lonely, '/api/runs/e00000000'), 503, 'NO_WORKERS');
    });
  });

  describe('runs', () => {
    it('answers 404 UNKNOWN_RUN to an unknown id and 400 to a malformed one or a bad limit', async () => {
      assertError(await call(url, '/api/runs/e00000000-1'), 404, 'UNKNOWN_RUN');
      assertError(await call(url, '/api/runs/e00000000'), 404, 'UNKNOWN_RUN');
      assertError(await call(url, '/api/runs/not_an_id'), 400, 'BAD_REQUEST');
      assertError(await call(url, '/api/runs?limit=0'), 400, 'BAD_REQUEST');
      assertError(await call(url, '/api/runs?limit=lots'), 400, 'BAD_REQUEST');
    });

    it('trains a grid as a job with live progress, tracks the experiment and its runs, and exports the model', async () => {
      const started = await call(url, '/api/train', json({
        datasetId: 'halves',
        params: { learningRate: 0.003, batchSize: 8 },
        search: { mode: 'grid', params: ['hidden=16,32'] },
        epochs: 6,
        seed: 7,
        export: { name: 'halves' },
      }));
      assert.equal(started.status, 202, JSON.stringify(started.body));
      assert.equal(started.body.runs, 2);
      assert.equal(started.body.state, 'queued');
      assert.equal(started.headers.get('location'), started.body.url);

      const events = await readEvents(new URL(started.body.eventsUrl, url).href);
      const progress = events.filter((e) => e.event === 'progress').map((e) => e.data.data as TrainProgressMessage);
      assert.equal(progress[0]?.type, 'started');
      const epochs = progress.filter((m) => m.type === 'epoch');
      const runIds = new Set(epochs.filter((m) => m.phase === 'run').map((m) => m.runId));
      assert.equal(runIds.size, 2, 'epochs of both runs arrive as progress');
      assert.ok(epochs.every((m) => m.runs === 2 && m.loss > 0 && m.valAccuracy >= 0 && m.valAccuracy <= 1));
      const done = events.at(-1)!;
      assert.equal(done.event, 'done');
      const status = done.data as JobStatus;
      assert.equal(status.state, 'succeeded', JSON.stringify(status.failure));
      const result = status.result as TrainResultMessage;
      assert.equal(result.runs.length, 2);
      assert.deepEqual(result.classes, ['bottom', 'left', 'right', 'top']);
      assert.deepEqual(result.model, { name: 'halves', version: '1' });
      assert.ok(result.test.accuracy >= 0.85, `test accuracy ${result.test.accuracy}`);

      const list = await call<ExperimentSummary[]>(url, '/api/runs?limit=5');
      const experiment = list.body.find((e) => e.id === result.experimentId)!;
      assert.ok(experiment, JSON.stringify(list.body.map((e) => e.id)));
      assert.equal(experiment.status, 'succeeded');
      assert.equal(experiment.datasetId, halves.id);
      assert.equal(experiment.modelName, 'halves');
      assert.deepEqual(experiment.runs.map((r) => r.params.hidden), [16, 32]);
      assert.equal(experiment.test?.confusion.length, 4);
      assert.deepEqual(experiment.test?.classes, ['bottom', 'left', 'right', 'top']);

      const detail = await call<ExperimentDetail>(url, `/api/runs/${result.experimentId}`);
      assert.equal(detail.status, 200);
      assert.equal(detail.body.runs.length, 2);
      assert.ok(detail.body.runs.every((r) => (r.epochs?.length ?? 0) >= 1));
      const run = await call<RunRecord>(url, `/api/runs/${result.best.runId}`);
      assert.equal(run.body.experimentId, result.experimentId);
      assert.ok(run.body.epochs!.some((e) => e.phase === 'refit'), 'the best run carries the refit epochs');
      assert.equal(run.body.modelName, 'halves');
    });

    it('cancels a training through its job', async () => {
      const started = await call(url, '/api/train', json({ datasetId: 'mnist', params: { hidden: 32, patience: 50 }, epochs: 40, export: { name: 'never' } }));
      assert.equal(started.status, 202, JSON.stringify(started.body));
      // Wait for the first epoch, then cancel.
      const response = await fetch(new URL(started.body.eventsUrl, url));
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let seen = '';
      while (!/"type":"epoch"/.test(seen)) {
        const { value, done } = await reader.read();
        assert.ok(!done, `the stream ended before an epoch: ${seen}`);
        seen += value;
      }
      const canceled = await call<JobStatus>(url, started.body.url, { method: 'DELETE' });
      assert.equal(canceled.status, 200);
      assert.equal(canceled.body.state, 'canceled');
      while (!(await reader.read()).done) {
        // the stream ends with `done`
      }
      const experimentId = /"experimentId":"(e[0-9a-f]+)"/.exec(seen)![1]!;
      // The training worker stops the experiment and records it canceled.
      for (;;) {
        const experiment = await call<ExperimentDetail>(url, `/api/runs/${experimentId}`);
        if (experiment.body.status !== 'running') {
          assert.equal(experiment.body.status, 'canceled');
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    });
  });

});
