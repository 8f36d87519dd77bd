import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { MAX_INFER_BATCH, tensorView, type InferHeader, type InferReplyHeader, type ModelMetadata } from '../shared/infer-messages.ts';
import { encodeHeader } from '../shared/messages.ts';
import { InferenceEngine } from '../workers/inference/inference-engine.ts';
import { ModelSession } from '../shared/model-exchange/model-session.ts';
import { TensorInference } from '../workers/inference/tensor-inference.ts';
import { image, makeRepository } from './fixtures/inference-models.ts';
import { squeezenetTensor } from './fixtures/oip-cluster.ts';
import { rejectsWith } from './helpers/error-code.ts';
import { argmax } from '../shared/argmax.ts';

const TABBY = 281;

describe('inference worker: tensor and batch inputs (infer.<model>)', function () {
  this.timeout(60_000);
  let models: string;
  let engine: InferenceEngine;
  let tensors: TensorInference;
  let runs: number;
  const runTensor = ModelSession.prototype.runTensor;

  before(async () => {
    models = await makeRepository();
    engine = new InferenceEngine({ models, pollIntervalMs: 60_000 });
    await engine.start();
    tensors = new TensorInference(engine);
    // Counts session runs, to tell one batched run from one run per row; the real run still happens.
    ModelSession.prototype.runTensor = function (...args) {
      runs++;
      return runTensor.apply(this, args);
    };
  });
  after(async () => {
    ModelSession.prototype.runTensor = runTensor;
    await engine.close();
    await rm(models, { recursive: true, force: true });
  });
  beforeEach(() => {
    runs = 0;
  });

  const ask = async (model: string, header: InferHeader, frames: Buffer[] = []) => {
    const [reply, output] = await tensors.handle(model, [encodeHeader(header), ...frames]);
    return { header: JSON.parse(reply!.toString()) as InferReplyHeader, output: output! };
  };

  it('answers the tensors as the ONNX files declare them, a dynamic batch as -1', async () => {
    const [reply] = await tensors.handle('squeezenet-fp32', [encodeHeader({ op: 'metadata' })]);
    const metadata = JSON.parse(reply!.toString()) as ModelMetadata;
    assert.deepEqual(metadata.inputs, [{ name: 'data_0', datatype: 'FP32', shape: [-1, 3, 224, 224] }]);
    assert.deepEqual(metadata.outputs, [{ name: 'softmaxout_1', datatype: 'FP32', shape: [-1, 1000, 1, 1] }]);
    const [mnist] = await tensors.handle('mnist', [encodeHeader({ op: 'metadata', version: '1' })]);
    assert.deepEqual((JSON.parse(mnist!.toString()) as ModelMetadata).inputs, [{ name: 'Input3', datatype: 'FP32', shape: [1, 1, 28, 28] }]);
  });

  it('runs a raw FP32 tensor frame straight through the session and answers raw little-endian output bytes', async () => {
    const tensor = await squeezenetTensor(image('kitten.png'));
    const { header, output } = await ask('squeezenet-fp32', { op: 'tensor', datatype: 'FP32', shape: [1, 3, 224, 224], classification: 2 }, [
      Buffer.from(tensor.buffer),
    ]);
    assert.equal(runs, 1);
    assert.deepEqual(header.output, { name: 'softmaxout_1', datatype: 'FP32', shape: [1, 1000, 1, 1] });
    assert.equal(header.timings.decodeMs, undefined, 'no image decode on the tensor path');
    assert.equal(output.length, 4000);
    const scores = tensorView(output, 'FP32');
    assert.equal(argmax(scores), TABBY);
    assert.deepEqual(header.classes![0]!.map((c) => c.index)[0], TABBY);
    assert.equal(header.classes![0]![0]!.probability, scores[TABBY]);
  });

  it('decodes a batch of images as classify does: one run on a dynamic batch, one run per row on a batch fixed to 1', async () => {
    const images = [image('kitten.png'), image('fish.png')];
    const classified = await engine.classify('squeezenet-fp32', { topk: 1 }, images[0]!);
    runs = 0;
    const dynamic = await ask('squeezenet-fp32', { op: 'images' }, images);
    assert.equal(runs, 1, 'squeezenet-fp32 takes the whole batch in one run');
    assert.deepEqual(dynamic.header.output.shape, [2, 1000, 1, 1]);
    const scores = tensorView(dynamic.output, 'FP32');
    assert.deepEqual([argmax(scores, 0, 1000), argmax(scores, 1000, 2000)], [TABBY, 0]);
    assert.ok(Math.abs(scores[TABBY]! - classified.predictions[0]!.probability) < 1e-5, 'the same preprocessing as classify');
    runs = 0;
    const fixed = await ask('squeezenet', { op: 'images' }, images);
    assert.equal(runs, 2, 'squeezenet (batch fixed to 1) runs once per image');
    assert.deepEqual(fixed.header.output, { name: 'softmaxout_1', datatype: 'FP16', shape: [2, 1000, 1, 1] });
    assert.equal(fixed.output.length, 2 * 1000 * 2, 'float16 output stays float16 on the wire');
  });

  it('refuses what does not fit: wrong datatype, shape, size, names, op, batch, and bad images', async () => {
    const fp32 = Buffer.alloc(4 * 150528);
    await rejectsWith(ask('squeezenet', { op: 'tensor', datatype: 'FP32', shape: [1, 3, 224, 224] }, [fp32]), 'BAD_REQUEST');
    await rejectsWith(ask('squeezenet-fp32', { op: 'tensor', datatype: 'FP32', shape: [1, 3, 112, 448] }, [fp32]), 'BAD_REQUEST');
    await rejectsWith(ask('squeezenet-fp32', { op: 'tensor', datatype: 'FP32', shape: [1, 3, 224, 224] }, [fp32.subarray(4)]), 'BAD_REQUEST');
    await rejectsWith(ask('squeezenet-fp32', { op: 'tensor', datatype: 'FP32', shape: [1, 3, 224, 224], input: 'pixels' }, [fp32]), 'BAD_REQUEST');
    await rejectsWith(ask('squeezenet-fp32', { op: 'tensor', datatype: 'INT8' as 'FP32', shape: [1] }, [Buffer.alloc(1)]), 'BAD_REQUEST');
    await rejectsWith(ask('squeezenet-fp32', { op: 'classify' as 'tensor' }), 'BAD_REQUEST');
    await rejectsWith(ask('squeezenet-fp32', { op: 'images' }, Array.from({ length: MAX_INFER_BATCH + 1 }, () => image('kitten.png'))), 'BAD_REQUEST');
    await rejectsWith(ask('squeezenet-fp32', { op: 'images' }, [image('kitten.png'), Buffer.from('not an image')]), 'BAD_IMAGE');
    await rejectsWith(ask('nosuch', { op: 'metadata' }), 'UNKNOWN_MODEL');
    await rejectsWith(ask('squeezenet', { op: 'metadata', version: '9' }), 'UNKNOWN_MODEL');
    const after = await ask('squeezenet-fp32', { op: 'images' }, [image('kitten.png')]);
    assert.equal(argmax(tensorView(after.output, 'FP32')), TABBY, 'still serving after each refusal');
  });

  it('refuses a tensor holding NaN or infinity (FP32 and FP16) as BAD_REQUEST, never INTERNAL, and goes on serving', async () => {
    const fp32 = new Float32Array(150528);
    fp32[7] = Number.POSITIVE_INFINITY;
    await rejectsWith(ask('squeezenet-fp32', { op: 'tensor', datatype: 'FP32', shape: [1, 3, 224, 224], classification: 1 }, [Buffer.from(fp32.buffer)]), 'BAD_REQUEST');
    fp32[7] = Number.NaN;
    await rejectsWith(ask('squeezenet-fp32', { op: 'tensor', datatype: 'FP32', shape: [1, 3, 224, 224] }, [Buffer.from(fp32.buffer)]), 'BAD_REQUEST');
    const fp16 = new Uint16Array(150528).fill(0x3c00); // 1.0
    fp16[150527] = 0x7e00; // NaN
    await rejectsWith(ask('squeezenet', { op: 'tensor', datatype: 'FP16', shape: [1, 3, 224, 224], classification: 1 }, [Buffer.from(fp16.buffer)]), 'BAD_REQUEST');
    fp16[150527] = 0xfc00; // -infinity
    await rejectsWith(ask('squeezenet', { op: 'tensor', datatype: 'FP16', shape: [1, 3, 224, 224] }, [Buffer.from(fp16.buffer)]), 'BAD_REQUEST');
    fp16[150527] = 0x7bff; // 65504, the largest finite float16: runs
    const { header } = await ask('squeezenet', { op: 'tensor', datatype: 'FP16', shape: [1, 3, 224, 224] }, [Buffer.from(fp16.buffer)]);
    assert.deepEqual(header.output.shape, [1, 1000, 1, 1]);
  });

  it("answers every class when classification asks for more than the model has, as Triton does", async () => {
    const digit = await ask('mnist', { op: 'images', classification: 50 }, [image('digit.png')]);
    assert.equal(digit.header.classes![0]!.length, 10, 'mnist has 10 classes');
    assert.equal(digit.header.classes![0]![0]!.label, '8');
    const tensor = await squeezenetTensor(image('kitten.png'));
    const { header } = await ask('squeezenet-fp32', { op: 'tensor', datatype: 'FP32', shape: [1, 3, 224, 224], classification: 5000 }, [Buffer.from(tensor.buffer)]);
    assert.equal(header.classes![0]!.length, 1000);
    assert.equal(header.classes![0]![0]!.index, TABBY);
    await rejectsWith(ask('mnist', { op: 'images', classification: 0 }, [image('digit.png')]), 'BAD_REQUEST');
  });
});
