import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { addModelVersion } from '../shared/model-exchange/model-writer.ts';
import { BackboneRepository, isBackboneName } from '../workers/training/backbone-repository.ts';
import { modelFile } from './fixtures/inference-models.ts';
import { tempDir } from './helpers/cluster.ts';

describe("a training worker's backbones", function () {
  this.timeout(20_000);
  let dir: { path: string; remove: () => Promise<void> };

  beforeEach(async () => {
    dir = await tempDir('zerve-backbones-');
    await mkdir(join(dir.path, 'models'));
  });
  afterEach(() => dir?.remove());

  it('takes squeezenet models only as backbones', () => {
    assert.equal(isBackboneName('squeezenet-fp32'), true);
    assert.equal(isBackboneName('digits'), false);
    assert.equal(isBackboneName('squeezenet/../x'), false);
  });

  it('finds a backbone that arrives from the cluster while a lookup waits for the catch-up', async () => {
    const models = join(dir.path, 'models');
    let catchUps = 0;
    const repository = new BackboneRepository(models, async () => {
      catchUps++;
      // What ModelSync does before it reports caught up: the cluster's squeezenet lands in the folder.
      await addModelVersion({ models, name: 'squeezenet-fp32', file: modelFile('squeezenet-fp32'), channels: 'bgr' });
    });
    assert.equal(await repository.preferred(), 'squeezenet-fp32');
    assert.equal((await repository.resolve('squeezenet-fp32'))?.name, 'squeezenet-fp32');
    assert.equal(await repository.resolve('squeezenet'), undefined, 'not in the folder, not in the cluster');
    assert.equal(catchUps, 1);
  });

  it('waits once for a cluster that never catches up, then answers from the folder alone', async () => {
    let catchUps = 0;
    const repository = new BackboneRepository(join(dir.path, 'models'), () => {
      catchUps++;
      return new Promise<void>(() => undefined);
    }, 50);
    assert.equal(await repository.preferred(), undefined);
    assert.equal(await repository.resolve('squeezenet'), undefined);
    assert.equal(await repository.preferred(), undefined);
    assert.equal(catchUps, 1, 'later lookups do not wait again');
  });

  it('never waits without a cluster (no --broker)', async () => {
    assert.equal(await new BackboneRepository(join(dir.path, 'models')).preferred(), undefined);
  });
});
