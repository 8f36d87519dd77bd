import assert from 'node:assert/strict';
import { ZerveError } from '../shared/errors.ts';
import { parseModelConfig } from '../shared/model-exchange/model-config.ts';
import { resolveInput } from '../shared/model-exchange/model-session.ts';

function rejects(value: unknown, pattern: RegExp): void {
  assert.throws(
    () => parseModelConfig(value),
    (err: unknown) => err instanceof ZerveError && err.code === 'BAD_REQUEST' && pattern.test(err.message),
  );
}

describe('inference model config', () => {
  it('fills in the defaults of an empty config', () => {
    assert.deepEqual(parseModelConfig({}), { input: { resize: 'cover', range: [0, 255] }, output: { kind: 'probabilities' }, topk: 5 });
  });

  it('rejects unknown keys, wrong types and paths outside the version folder', () => {
    rejects([], /JSON object/);
    rejects({ inputs: {} }, /unknown key inputs/);
    rejects({ input: { colour: 'rgb' } }, /unknown key input\.colour/);
    rejects({ input: { channels: 'RGB' } }, /input\.channels must be one of/);
    rejects({ input: { resize: 'crop' } }, /input\.resize/);
    rejects({ input: { width: 0 } }, /input\.width/);
    rejects({ input: { width: 22.5 } }, /input\.width/);
    rejects({ input: { range: [0, 0] } }, /input\.range/);
    rejects({ input: { range: '0-255' } }, /input\.range/);
    rejects({ input: { channels: 'rgb', mean: [1, 2] } }, /input\.mean must be an array of 3/);
    rejects({ input: { std: [1, 0, 1] } }, /input\.std values must be greater than 0/);
    rejects({ input: { layout: 'CHW' } }, /input\.layout/);
    rejects({ output: { kind: 'softmax' } }, /output\.kind/);
    rejects({ topk: 0 }, /topk/);
    rejects({ labels: '../../etc/passwd' }, /labels must be a file name/);
    rejects({ labels: '/etc/passwd' }, /labels must be a file name/);
    rejects({ description: 3 }, /description/);
  });

  it('takes size, channels and layout from the model when the config leaves them out', () => {
    const config = parseModelConfig({});
    assert.deepEqual(resolveInput(config.input, [1, 1, 28, 28], 'm').shape, [1, 1, 28, 28]);
    assert.equal(resolveInput(config.input, [1, 1, 28, 28], 'm').spec.channels, 'grey');
    const nhwc = resolveInput(config.input, ['N', 299, 299, 3], 'm');
    assert.equal(nhwc.spec.layout, 'NHWC');
    assert.deepEqual(nhwc.shape, [1, 299, 299, 3]);
    const dynamic = resolveInput(parseModelConfig({ input: { width: 64, height: 32 } }).input, ['N', 3, 'H', 'W'], 'm');
    assert.deepEqual(dynamic.shape, [1, 3, 32, 64]);
    assert.throws(() => resolveInput(config.input, ['N', 3, 'H', 'W'], 'm'), /symbolic/);
    assert.throws(() => resolveInput(config.input, [4, 3, 224, 224], 'm'), /batch/);
    assert.throws(() => resolveInput(config.input, [1, 1000], 'm'), /4-D/);
  });
});
