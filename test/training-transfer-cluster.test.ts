import assert from 'node:assert/strict';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { encodeJson } from '../shared/messages.ts';
import { DATASETS_ADD, requestTraining, type DatasetSummary, type TrainResultMessage, type TrainStarted } from '../shared/training.ts';
import { makeRepository } from './fixtures/inference-models.ts';
import { photoVariants } from './helpers/photo-variants.ts';
import { makeZip, type ArchiveEntry } from './fixtures/training-archives.ts';
import { fixtureImage, nextWorker, spawnWorker, startBroker, tempDir, type CliProcess } from './helpers/cluster.ts';

describe('transfer learning through the cluster', function () {
  this.timeout(120_000);
  let dir: { path: string; remove: () => Promise<void> };
  let models: string;
  let broker: Broker;
  let client: ZerveClient;
  let training: CliProcess;
  let inference: CliProcess;
  /** The training worker's own models folder: empty at start, as in a container. */
  let trainingModels: string;
  const testImages: { label: string; bytes: Buffer }[] = [];
  let dataset: DatasetSummary;
  let result: TrainResultMessage;
  let started: TrainStarted | undefined;

  before(async () => {
    dir = await tempDir('zerve-transfer-cluster-');
    models = await makeRepository();
    trainingModels = join(dir.path, 'models');
    broker = await startBroker();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 60_000 });
    // The squeezenets are on the inference worker's host only: the training worker fetches the backbone from it.
    inference = await spawnWorker(broker, ['inference', '--models', models], (w) => w.services.includes('classify.squeezenet-fp32'));
    training = await spawnWorker(broker, ['training', '--data', join(dir.path, 'data'), '--models', trainingModels, '--broker', broker.frontendEndpoint], (w) => w.services.includes('train'));

    const entries: ArchiveEntry[] = [];
    for (const [label, file] of [['kitten', 'kitten.png'], ['fish', 'fish.png']] as const) {
      const variants = await photoVariants(await readFile(fixtureImage(file)), 16, 100);
      for (const [i, data] of variants.entries()) {
        const test = i >= 10;
        entries.push({ name: `${test ? 'test/' : ''}${label}/${i}.jpg`, data });
        if (test) testImages.push({ label, bytes: data });
      }
    }
    dataset = await client.requestJson<DatasetSummary>(DATASETS_ADD, [encodeJson({ name: 'pets' }), makeZip(entries)]);
    // No family or backbone: a photo dataset defaults to transfer learning on a served squeezenet.
    result = await requestTraining(
      client,
      { datasetId: 'pets', split: { kind: 'explicit' }, epochs: 30, seed: 5, export: { name: 'pets' } },
      { onProgress: (message) => { if (message.type === 'started') started = message; } },
    );
  });

  after(async () => {
    await client?.close();
    await Promise.all([training?.kill('SIGTERM'), inference?.kill('SIGTERM')]);
    await broker?.close();
    await dir?.remove();
    if (models) await rm(models, { recursive: true, force: true });
  });

  it('trains an uploaded photo dataset by transfer learning on the float32 squeezenet by default, fetched from the cluster', async () => {
    assert.equal(started?.family, 'transfer');
    assert.equal(started?.backbone, 'squeezenet-fp32');
    assert.equal(dataset.explicitTest, true);
    assert.deepEqual(result.classes, ['fish', 'kitten']);
    assert.equal(result.datasetId, dataset.id);
    assert.ok(result.test.accuracy >= 0.9, `test accuracy ${result.test.accuracy}`);
    assert.deepEqual(result.model, { name: 'pets', version: '1' });
    // Backbones only: the training worker took both squeezenets from the cluster, not the digits model.
    assert.deepEqual((await readdir(trainingModels)).filter((n) => !n.startsWith('.')).sort(), ['pets', 'squeezenet', 'squeezenet-fp32']);
  });

  it('serves the merged model, whose answers on the test split reproduce the trainer\'s confusion matrix', async () => {
    // The inference worker takes the exported model from the training worker's folder.
    const served = nextWorker(broker, (w) => w.services.includes('classify.pets'));
    const workers = await client.workers();
    if (!workers.some((w) => w.services.includes('classify.pets'))) await served;
    const confusion = result.classes.map(() => result.classes.map(() => 0));
    for (const { label, bytes } of testImages) {
      const reply = await client.classify('pets', bytes);
      assert.equal(reply.model, 'pets');
      confusion[result.classes.indexOf(label)]![result.classes.indexOf(reply.predictions[0]!.label)]!++;
    }
    assert.deepEqual(confusion, result.test.confusion);
  });
});
