/**
 * Pretrained ONNX backbones used as feature extractors for transfer learning: what each expects
 * (size, channel order, scale) and the graph surgery that exposes an inner tensor as the
 * embedding (`buildEmbeddingModel`).
 */
import sharp from 'sharp';
import { ZerveError } from '../../shared/errors.ts';
import type { ImageSource } from './dataset-store.ts';
import { ATTR_INT, decodeModel, floatValueInfo, ONNX_FLOAT, ONNX_FLOAT16, toInt, type OnnxModel, type OnnxNode } from './onnx-proto.ts';

/** Output name of the embedding added to a backbone graph. */
export const EMBEDDING_OUTPUT = 'zerve_embedding';

export interface BackboneSpec {
  /** Short name recorded in configs, e.g. `squeezenet-fp32`. */
  name: string;
  /** Path of the backbone's `model.onnx`. */
  modelPath: string;
  /** Graph input, float32 or float16 [N, 3, height, width] (a fixed batch of 1 is made dynamic). */
  inputName: string;
  /** Inner tensor taken as the embedding. */
  featureTensor: string;
  /** `global-average`: a 4-D feature map is pooled to [N, C] (GlobalAveragePool + Flatten). */
  pool: 'global-average' | 'none';
  width: number;
  height: number;
  channelOrder: 'rgb' | 'bgr';
  /** Pixel values 0..255 (`255`) or 0..1 (`1`), before mean/std. */
  scale: 1 | 255;
  mean?: [number, number, number];
  std?: [number, number, number];
}

/**
 * SqueezeNet 1.1, float32 or float16 (either batch layout): embedding = global average of `fire9/concat_2`, the
 * 512-channel 13x13 map the classifier conv (`conv10`) reads, taken after its (inference-time
 * identity) Dropout. 224x224 BGR 0..255, no mean/std.
 */
export function squeezenetBackbone(modelPath: string): BackboneSpec {
  return {
    name: 'squeezenet-fp32',
    modelPath,
    inputName: 'data_0',
    featureTensor: 'fire9/concat_2',
    pool: 'global-average',
    width: 224,
    height: 224,
    channelOrder: 'bgr',
    scale: 255,
  };
}

/** Element type of a backbone's input, which the embedding graph keeps. */
export type BackboneInputType = 'float32' | 'float16';

/** The element type of `spec.inputName` in a decoded backbone. */
export function backboneInputType(model: OnnxModel, spec: BackboneSpec): BackboneInputType {
  const input = model.graph.input.find((v) => v.name === spec.inputName);
  if (!input) throw new ZerveError('BAD_REQUEST', `backbone ${spec.name} has no input ${spec.inputName}`);
  const type = input.type?.tensor_type?.elem_type ?? ONNX_FLOAT;
  if (type === ONNX_FLOAT) return 'float32';
  if (type === ONNX_FLOAT16) return 'float16';
  throw new ZerveError('BAD_REQUEST', `backbone ${spec.name}: input ${spec.inputName} has ONNX type ${type}; only float32 and float16 backbones are supported`);
}

/**
 * Rewrites a backbone so its only output is `zerve_embedding` [N, D] float32: keeps only the nodes
 * the feature tensor needs, turns Dropout into a pass-through, drops unused initializers and the
 * initializers listed as inputs (IR >= 4 allows that), makes the batch dimension dynamic, and
 * appends pooling, then a Cast to float32 for a float16 backbone (its input stays float16; the
 * head is float32).
 */
export function buildEmbeddingModel(modelBytes: Uint8Array, spec: BackboneSpec): OnnxModel {
  const model = decodeModel(modelBytes);
  const graph = model.graph;
  const producers = new Map<string, OnnxNode>();
  for (const node of graph.node) for (const out of node.output) producers.set(out, node);
  if (!producers.has(spec.featureTensor)) {
    throw new ZerveError('BAD_REQUEST', `backbone ${spec.name} has no tensor ${spec.featureTensor}`);
  }
  // Dropout is the identity at inference; alias its output to its input.
  const alias = new Map<string, string>();
  for (const node of graph.node) if (node.op_type === 'Dropout') alias.set(node.output[0], node.input[0]);
  const resolve = (name: string): string => {
    let n = name;
    while (alias.has(n)) n = alias.get(n) as string;
    return n;
  };
  const target = resolve(spec.featureTensor);
  const needed = new Set<string>([target]);
  const kept: OnnxNode[] = [];
  for (let i = graph.node.length - 1; i >= 0; i--) {
    const node = graph.node[i];
    if (node.op_type === 'Dropout' || !node.output.some((o) => needed.has(o))) continue;
    node.input = node.input.map(resolve);
    for (const input of node.input) needed.add(input);
    kept.push(node);
  }
  kept.reverse();
  const initializerNames = new Set(graph.initializer.map((t) => t.name));
  graph.initializer = graph.initializer.filter((t) => needed.has(t.name));
  graph.input = graph.input.filter((v) => !initializerNames.has(v.name));
  const inputType = backboneInputType(model, spec);
  // Embeddings run in batches; squeezenet's layers up to the feature tensor are batch-agnostic.
  const batchDim = graph.input.find((v) => v.name === spec.inputName)?.type?.tensor_type?.shape?.dim?.[0];
  if (batchDim) {
    delete batchDim.dim_value;
    batchDim.dim_param = 'N';
  }
  graph.value_info = [];
  let pooled = target;
  if (spec.pool === 'global-average') {
    kept.push({ op_type: 'GlobalAveragePool', input: [target], output: ['zerve_pooled'], name: 'zerve_pool' });
    pooled = 'zerve_pooled';
  }
  const flat = inputType === 'float16' ? 'zerve_flat16' : EMBEDDING_OUTPUT;
  kept.push({ op_type: 'Flatten', input: [pooled], output: [flat], name: 'zerve_flatten', attribute: [{ name: 'axis', type: ATTR_INT, i: 1 }] });
  if (inputType === 'float16') {
    kept.push({ op_type: 'Cast', input: [flat], output: [EMBEDDING_OUTPUT], name: 'zerve_cast', attribute: [{ name: 'to', type: ATTR_INT, i: ONNX_FLOAT }] });
  }
  graph.node = kept;
  graph.output = [floatValueInfo(EMBEDDING_OUTPUT, ['N', 'D'])];
  model.ir_version = Math.max(toInt(model.ir_version), 7);
  return model;
}

/** Decodes, resizes (stretch) and lays out one image as the backbone expects: CHW float32. */
export async function preprocessForBackbone(source: ImageSource, spec: BackboneSpec, maxInputPixels: number): Promise<Float32Array> {
  const image =
    source.kind === 'encoded'
      ? sharp(source.bytes, { limitInputPixels: maxInputPixels })
      : sharp(source.pixels, { raw: { width: source.width, height: source.height, channels: source.channels } });
  const { data, info } = await image
    .rotate()
    .flatten({ background: '#ffffff' })
    .resize(spec.width, spec.height, { fit: 'fill' })
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new ZerveError('BAD_IMAGE', `expected 3 channels after conversion, got ${info.channels}`);
  const area = spec.width * spec.height;
  const out = new Float32Array(3 * area);
  const factor = spec.scale === 255 ? 1 : 1 / 255;
  for (let c = 0; c < 3; c++) {
    const src = spec.channelOrder === 'bgr' ? 2 - c : c;
    const mean = spec.mean?.[c] ?? 0;
    const std = spec.std?.[c] ?? 1;
    const plane = c * area;
    for (let i = 0; i < area; i++) out[plane + i] = (data[i * 3 + src] * factor - mean) / std;
  }
  return out;
}
