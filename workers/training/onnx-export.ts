/**
 * Exports a trained classifier as one self-contained ONNX file with a probabilities output, and
 * adds it to the model repository (`<models>/<name>/<version>/model.onnx`, `labels.txt`, then
 * `config.json` last) through the inference engine's own writer, which loads it in onnxruntime
 * first.
 *
 * - pixels: input `input` float32 [N, C, H, W] (0..1) → Flatten → (Gemm → Relu)* → Gemm →
 *   Softmax → `probabilities` [N, classes]; opset 13.
 * - embedding: the backbone graph (pruned to the embedding, see `buildEmbeddingModel`) with the
 *   head appended on the pooled tensor; the backbone's opset is kept (the head's ops exist in
 *   every opset from 7 on).
 * Input standardisation is folded into the first Gemm: W' = diag(scale)·W, b' = b − (mean·scale)ᵀW.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ZerveError } from '../../shared/errors.ts';
import type { ModelConfig } from '../../shared/model-exchange/model-config.ts';
import { addModelVersion, type AddedModelVersion, type AddModelVersionOptions } from '../../shared/model-exchange/model-writer.ts';
import { buildEmbeddingModel, EMBEDDING_OUTPUT } from './backbone.ts';
import type { FeatureSpec } from './features.ts';
import type { MlpClassifier } from './mlp.ts';
import { ATTR_INT, encodeModel, floatTensor, floatValueInfo, type OnnxModel, type OnnxNode, type OnnxTensor } from './onnx-proto.ts';

export const PROBABILITIES_OUTPUT = 'probabilities';
export const PIXEL_INPUT = 'input';

/** Gemm/Relu nodes and initializers of the classifier, reading `input` [N, D]; ends in Softmax. */
function headNodes(mlp: MlpClassifier, input: string, prefix: string): { nodes: OnnxNode[]; initializers: OnnxTensor[] } {
  const nodes: OnnxNode[] = [];
  const initializers: OnnxTensor[] = [];
  let current = input;
  mlp.layers.forEach((layer, l) => {
    let weights = layer.weights;
    let bias = layer.bias;
    if (l === 0 && mlp.inputMean && mlp.inputScale) {
      const mean = mlp.inputMean;
      const scale = mlp.inputScale;
      weights = new Float32Array(layer.weights.length);
      const folded = new Float64Array(layer.bias);
      for (let k = 0; k < layer.inputs; k++) {
        for (let j = 0; j < layer.outputs; j++) {
          const w = layer.weights[k * layer.outputs + j] * scale[k];
          weights[k * layer.outputs + j] = w;
          folded[j] -= mean[k] * w;
        }
      }
      bias = Float32Array.from(folded);
    }
    const w = `${prefix}w${l}`;
    const b = `${prefix}b${l}`;
    initializers.push(floatTensor(w, [layer.inputs, layer.outputs], weights), floatTensor(b, [layer.outputs], bias));
    const out = `${prefix}gemm${l}`;
    nodes.push({ op_type: 'Gemm', name: `${prefix}gemm${l}`, input: [current, w, b], output: [out] });
    current = out;
    if (l + 1 < mlp.layers.length) {
      nodes.push({ op_type: 'Relu', name: `${prefix}relu${l}`, input: [current], output: [`${prefix}relu${l}`] });
      current = `${prefix}relu${l}`;
    }
  });
  nodes.push({
    op_type: 'Softmax',
    name: `${prefix}softmax`,
    input: [current],
    output: [PROBABILITIES_OUTPUT],
    attribute: [{ name: 'axis', type: ATTR_INT, i: 1 }],
  });
  return { nodes, initializers };
}

/** Builds the ONNX model of a classifier trained on `features` (reads the backbone file for embeddings). */
export async function buildClassifierModel(mlp: MlpClassifier, features: FeatureSpec): Promise<OnnxModel> {
  if (features.kind === 'pixels') {
    const { width, height, channels } = features;
    if (channels * width * height !== mlp.inputSize) throw new ZerveError('BAD_REQUEST', 'pixel shape does not match the classifier input');
    const head = headNodes(mlp, 'flat', 'head/');
    return {
      ir_version: 7,
      opset_import: [{ domain: '', version: 13 }],
      producer_name: 'zerve-training',
      producer_version: '0.1.0',
      graph: {
        name: 'zerve_mlp',
        node: [{ op_type: 'Flatten', name: 'flatten', input: [PIXEL_INPUT], output: ['flat'], attribute: [{ name: 'axis', type: ATTR_INT, i: 1 }] }, ...head.nodes],
        initializer: head.initializers,
        input: [floatValueInfo(PIXEL_INPUT, ['N', channels, height, width])],
        output: [floatValueInfo(PROBABILITIES_OUTPUT, ['N', mlp.classes])],
      },
    };
  }
  const model = buildEmbeddingModel(await readFile(features.backbone.modelPath), features.backbone);
  const head = headNodes(mlp, EMBEDDING_OUTPUT, 'zerve_head/');
  model.graph.node.push(...head.nodes);
  model.graph.initializer.push(...head.initializers);
  model.graph.output = [floatValueInfo(PROBABILITIES_OUTPUT, ['N', mlp.classes])];
  model.producer_name = 'zerve-training';
  model.producer_version = '0.1.0';
  return model;
}

/** The config.json draft matching the preprocessing the classifier was trained with. */
export function modelConfigFor(features: FeatureSpec): Pick<ModelConfig['input'], 'width' | 'height' | 'channels' | 'range' | 'mean' | 'std' | 'resize' | 'layout'> {
  if (features.kind === 'pixels') {
    return { width: features.width, height: features.height, channels: features.channels === 1 ? 'grey' : 'rgb', range: [0, 1], resize: 'fill', layout: 'NCHW' };
  }
  const b = features.backbone;
  return {
    width: b.width,
    height: b.height,
    channels: b.channelOrder,
    range: b.scale === 255 ? [0, 255] : [0, 1],
    ...(b.mean ? { mean: b.mean } : {}),
    ...(b.std ? { std: b.std } : {}),
    resize: 'fill',
    layout: 'NCHW',
  };
}

export interface ExportOptions {
  mlp: MlpClassifier;
  features: FeatureSpec;
  /** Class names, index = class. */
  classes: string[];
  /** Model repository root. */
  models: string;
  /** Model name (served as `classify.<name>`). */
  name: string;
  description?: string;
  /** Where the files are staged before the repository writer copies them. @defaultValue os.tmpdir() */
  tmpDir?: string;
  /** Writes the version. @defaultValue addModelVersion (the local repository) */
  addVersion?: AddVersion;
}

/** Writes a model version somewhere: the local repository, or the cluster (ModelHolder.publish). */
export type AddVersion = (options: AddModelVersionOptions) => Promise<AddedModelVersion>;

export interface ExportedModel {
  name: string;
  version: string;
  /** Version folder. */
  path: string;
  modelPath: string;
  config: ModelConfig;
}

/** Writes the classifier as the next version of `name` in the model repository. */
export async function exportModel(options: ExportOptions): Promise<ExportedModel> {
  const { mlp, features, classes } = options;
  if (classes.length !== mlp.classes) throw new ZerveError('BAD_REQUEST', 'class names do not match the classifier outputs');
  const staging = join(options.tmpDir ?? tmpdir(), `zerve-export-${randomUUID()}`);
  await mkdir(staging, { recursive: true });
  try {
    const modelFile = join(staging, 'model.onnx');
    const labelsFile = join(staging, 'labels.txt');
    await writeFile(modelFile, encodeModel(await buildClassifierModel(mlp, features)));
    // One label per line: line breaks inside a class name would shift every later label.
    await writeFile(labelsFile, `${classes.map((c) => c.replace(/[\r\n]+/g, ' ')).join('\n')}\n`);
    const input = modelConfigFor(features);
    const added = await (options.addVersion ?? addModelVersion)({
      name: options.name,
      file: modelFile,
      labels: labelsFile,
      channels: input.channels as string,
      size: { width: input.width as number, height: input.height as number },
      range: input.range,
      ...(input.mean ? { mean: input.mean } : {}),
      ...(input.std ? { std: input.std } : {}),
      resize: 'fill',
      layout: 'NCHW',
      topk: Math.min(5, classes.length),
      ...(options.description !== undefined ? { description: options.description } : {}),
      models: options.models,
    });
    return { name: added.name, version: added.version, path: added.path, modelPath: join(added.path, 'model.onnx'), config: added.config };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
