import assert from 'node:assert/strict';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ZerveError, type ErrorCode } from '../shared/errors.ts';
import { readModelConfig } from '../shared/model-exchange/model-config.ts';
import { addModelVersion, parseRange, parseSize } from '../shared/model-exchange/model-writer.ts';
import { imagePath, modelFile } from './fixtures/inference-models.ts';
import { tempDir } from './helpers/cluster.ts';

function isCode(code: ErrorCode, pattern?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ZerveError);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

describe('inference model writer', () => {
  let models: string;

  beforeEach(async () => {
    models = (await tempDir('zerve-writer-')).path;
  });

  afterEach(async () => {
    await rm(models, { recursive: true, force: true });
  });

  it('adds numbered versions with config.json, model.onnx and labels, inferring size and layout', async () => {
    const first = await addModelVersion({
      models,
      name: 'squeezenet',
      file: modelFile('squeezenet'),
      labels: modelFile('squeezenet', 'labels.txt'),
      channels: 'bgr',
    });
    assert.deepEqual([first.name, first.version, first.path], ['squeezenet', '1', path.join(models, 'squeezenet', '1')]);
    assert.deepEqual((await readdir(first.path)).sort(), ['config.json', 'labels.txt', 'model.onnx']);
    const config = await readModelConfig(first.path);
    assert.deepEqual(config, {
      input: { width: 224, height: 224, resize: 'cover', channels: 'bgr', range: [0, 255], layout: 'NCHW', background: 'white' },
      output: { kind: 'probabilities' },
      labels: 'labels.txt',
      topk: 5,
    });
    const second = await addModelVersion({ models, name: 'squeezenet', file: modelFile('squeezenet-fp32'), channels: 'bgr' });
    assert.equal(second.version, '2');
  });

  it('takes the CLI forms of size, range, mean and std', async () => {
    const added = await addModelVersion({
      models,
      name: 'mnist',
      file: modelFile('mnist'),
      logits: true,
      size: '28x28',
      range: '0-1',
      mean: '0.5',
      std: '0.25',
    });
    const config = await readModelConfig(added.path);
    assert.deepEqual(config.input, {
      width: 28,
      height: 28,
      resize: 'cover',
      channels: 'grey',
      range: [0, 1],
      mean: [0.5],
      std: [0.25],
      layout: 'NCHW',
      background: 'black',
    });
    assert.equal(config.output.kind, 'logits');
    assert.deepEqual(parseSize('640X480'), { width: 640, height: 480 });
    assert.deepEqual(parseRange('-1..1'), [-1, 1]);
  });

  it('rejects a file that is not ONNX with a clear error and writes nothing', async () => {
    const text = path.join(models, 'notes.txt');
    await writeFile(text, 'this is not a model\n');
    for (const file of [text, imagePath('kitten.png')]) {
      await assert.rejects(addModelVersion({ models, name: 'bogus', file }), isCode('BAD_REQUEST', /is not a model onnxruntime can load/));
    }
    assert.deepEqual(await readdir(models), ['notes.txt']);
  });

  it('rejects options that do not fit the model and writes nothing', async () => {
    const labels = path.join(models, 'labels.txt');
    await writeFile(labels, 'cat\ndog\n');
    const attempts: [Parameters<typeof addModelVersion>[0], RegExp][] = [
      [{ models, name: 'mnist', file: modelFile('mnist'), channels: 'rgb' }, /channels/],
      [{ models, name: 'mnist', file: modelFile('mnist'), size: '32x32' }, /width/],
      [{ models, name: 'mnist', file: modelFile('mnist'), labels }, /labels list 2 classes but the model outputs 10/],
      [{ models, name: 'mnist', file: modelFile('mnist'), channels: 'RGB' }, /input.channels/],
      [{ models, name: 'mnist', file: modelFile('mnist'), mean: '1,2,3' }, /mean/],
      [{ models, name: 'bad name', file: modelFile('mnist') }, /model name/],
      [{ models, name: 'mnist', file: path.join(models, 'missing.onnx') }, /cannot read/],
    ];
    for (const [options, pattern] of attempts) {
      await assert.rejects(addModelVersion(options), isCode('BAD_REQUEST', pattern));
    }
    assert.deepEqual(await readdir(models), ['labels.txt']);
  });

  it('never leaves a temporary file behind', async () => {
    const added = await addModelVersion({ models, name: 'mnist', file: modelFile('mnist'), logits: true });
    assert.deepEqual((await readdir(added.path)).sort(), ['config.json', 'model.onnx']);
    assert.ok((await readFile(path.join(added.path, 'config.json'), 'utf8')).endsWith('}\n'));
  });
});
