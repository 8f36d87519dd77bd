import * as ort from 'onnxruntime-node';
import { ZerveError } from '../errors.ts';
import type { Prediction } from '../messages.ts';
import { logger as rootLogger, type Logger } from '../logger.ts';
import { float16ToFloat32, float32ToFloat16 } from '../float16.ts';
import { channelCount, type DecodeSpec, type InputConfig, type ModelConfig, type TensorLayout } from './model-config.ts';

/** Tensor element types Zerve feeds and reads. */
export type TensorType = 'float32' | 'float16';

export interface TensorInfo {
  name: string;
  type: TensorType;
  /** Shape as the model declares it; symbolic dimensions are strings such as 'N'. */
  shape: ReadonlyArray<number | string>;
}

export interface ModelSessionOptions {
  /** Model name, for logs and errors. */
  name: string;
  /** Version name, for logs and errors. */
  version: string;
  /** Path of the `.onnx` file. */
  modelPath: string;
  config: ModelConfig;
  /** Class labels, line N = class N; absent means labels are `String(index)`. */
  labels?: string[];
  /** onnxruntime intra-op threads. @defaultValue 1 */
  threads?: number;
  logger?: Logger;
}

export interface InferenceResult {
  predictions: Prediction[];
  inferenceMs: number;
}

const SUPPORTED_TYPES: readonly string[] = ['float32', 'float16'];

function isSymbolic(dim: number | string | undefined): boolean {
  return typeof dim !== 'number' || dim < 1;
}

function tensorInfo(meta: ort.InferenceSession.ValueMetadata, what: string, source: string): TensorInfo {
  if (!meta.isTensor) throw new ZerveError('BAD_REQUEST', `${source}: ${what} ${meta.name} is not a tensor`);
  if (!SUPPORTED_TYPES.includes(meta.type)) {
    throw new ZerveError('BAD_REQUEST', `${source}: ${what} ${meta.name} is ${meta.type}; only float32 and float16 are supported`);
  }
  return { name: meta.name, type: meta.type as TensorType, shape: [...meta.shape] };
}

/**
 * Works out the tensor the model takes from its declared input shape and the config: the layout
 * (declared, else inferred from where the channel dimension is), width and height (declared or
 * from the shape; they must agree when both are known), batch 1 (fixed 1 or dynamic).
 * @throws ZerveError BAD_REQUEST when config and model disagree
 */
export function resolveInput(input: InputConfig, shape: ReadonlyArray<number | string>, source: string): { spec: DecodeSpec; shape: number[] } {
  if (shape.length !== 4) {
    throw new ZerveError('BAD_REQUEST', `${source}: the model input has shape [${shape.join(',')}]; a 4-D image tensor is required`);
  }
  const [batch, d1, d2, d3] = shape;
  if (!isSymbolic(batch) && batch !== 1) {
    throw new ZerveError('BAD_REQUEST', `${source}: the model input has a fixed batch size of ${batch}; 1 or dynamic is required`);
  }
  const isChannelDim = (d: number | string | undefined): boolean => d === 1 || d === 3;
  let layout: TensorLayout = input.layout ?? 'NCHW';
  if (input.layout === undefined && !isChannelDim(d1) && isChannelDim(d3)) layout = 'NHWC';
  const [c, h, w] = layout === 'NCHW' ? [d1, d2, d3] : [d3, d1, d2];
  const order = input.channels ?? (c === 1 ? 'grey' : 'rgb');
  const channels = channelCount(order);
  if (!isSymbolic(c) && c !== channels) {
    throw new ZerveError(
      'BAD_REQUEST',
      `${source}: the model input has ${c} channels (${layout} [${shape.join(',')}]) but channels "${order}" gives ${channels}`,
    );
  }
  for (const key of ['mean', 'std'] as const) {
    const values = input[key];
    if (values && values.length !== channels) {
      throw new ZerveError('BAD_REQUEST', `${source}: input.${key} has ${values.length} values; channels "${order}" needs ${channels}`);
    }
  }
  const size = (declared: number | undefined, dim: number | string | undefined, key: string): number => {
    if (!isSymbolic(dim)) {
      if (declared !== undefined && declared !== dim) {
        throw new ZerveError('BAD_REQUEST', `${source}: input.${key} is ${declared} but the model's input ${key} is ${dim}`);
      }
      return dim as number;
    }
    if (declared === undefined) {
      throw new ZerveError('BAD_REQUEST', `${source}: the model's input ${key} is symbolic (${String(dim)}); set input.${key}`);
    }
    return declared;
  };
  const width = size(input.width, w, 'width');
  const height = size(input.height, h, 'height');
  const spec: DecodeSpec = {
    width,
    height,
    resize: input.resize,
    channels: order,
    range: input.range,
    layout,
    background: input.background ?? (order === 'grey' ? 'black' : 'white'),
  };
  if (input.mean) spec.mean = input.mean;
  if (input.std) spec.std = input.std;
  return { spec, shape: layout === 'NCHW' ? [1, channels, height, width] : [1, height, width, channels] };
}

/** Numerically stable softmax, in place. */
function softmax(values: Float32Array): void {
  let max = -Infinity;
  for (const v of values) if (v > max) max = v;
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const e = Math.exp(values[i]! - max);
    values[i] = e;
    sum += e;
  }
  for (let i = 0; i < values.length; i++) values[i] = values[i]! / sum;
}

/**
 * One loaded model version: an onnxruntime session plus what it takes to feed it and read it.
 *
 * @example
 * const session = await ModelSession.load({ name: 'mnist', version: '1', modelPath, config });
 * const { predictions } = await session.classify(tensor, 3);
 * await session.release();
 */
export class ModelSession {
  readonly name: string;
  readonly version: string;
  readonly config: ModelConfig;
  readonly labels: readonly string[] | undefined;
  readonly input: TensorInfo;
  readonly output: TensorInfo;
  /** What the image decoder must produce for this model. */
  readonly decodeSpec: DecodeSpec;
  /** Shape fed to the model (batch 1). */
  readonly inputShape: readonly number[];
  /** Number of classes, from the warm-up run's output. */
  readonly classes: number;
  /** Milliseconds to create the session and to run the warm-up inference. */
  readonly loadMs: number;
  readonly warmUpMs: number;
  private readonly session: ort.InferenceSession;
  private released: Promise<void> | undefined;

  private constructor(fields: {
    options: ModelSessionOptions;
    session: ort.InferenceSession;
    input: TensorInfo;
    output: TensorInfo;
    spec: DecodeSpec;
    shape: number[];
    classes: number;
    loadMs: number;
    warmUpMs: number;
  }) {
    this.name = fields.options.name;
    this.version = fields.options.version;
    this.config = fields.options.config;
    this.labels = fields.options.labels;
    this.session = fields.session;
    this.input = fields.input;
    this.output = fields.output;
    this.decodeSpec = fields.spec;
    this.inputShape = fields.shape;
    this.classes = fields.classes;
    this.loadMs = fields.loadMs;
    this.warmUpMs = fields.warmUpMs;
  }

  /**
   * Creates the onnxruntime session, checks the model against its config and labels, and warms
   * it up with one inference on a blank input (the first run allocates and is much slower).
   * @throws ZerveError BAD_REQUEST when the file does not load or does not fit its config
   */
  static async load(options: ModelSessionOptions): Promise<ModelSession> {
    const source = options.modelPath;
    const log = (options.logger ?? rootLogger).child({ model: options.name, version: options.version });
    const started = performance.now();
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(options.modelPath, {
        intraOpNumThreads: options.threads ?? 1,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
        // Spinning intra-op threads burn the cores that decoding and the other processes need: with
        // 2 threads on 2 shared cores it halved throughput in `npm run bench`.
        extra: { session: { intra_op: { allow_spinning: '0' } } },
      });
    } catch (err) {
      throw new ZerveError('BAD_REQUEST', `${source} is not a model onnxruntime can load: ${(err as Error).message}`, { cause: err });
    }
    const loadMs = performance.now() - started;
    try {
      const inputs = session.inputMetadata;
      if (inputs.length !== 1) {
        throw new ZerveError('BAD_REQUEST', `${source}: the model has ${inputs.length} inputs; exactly 1 image input is required`);
      }
      const input = tensorInfo(inputs[0]!, 'input', source);
      if (session.outputMetadata.length === 0) throw new ZerveError('BAD_REQUEST', `${source}: the model has no outputs`);
      if (session.outputMetadata.length > 1) {
        log.warn({ outputs: session.outputNames }, 'model has several outputs; using the first');
      }
      const output = tensorInfo(session.outputMetadata[0]!, 'output', source);
      const { spec, shape } = resolveInput(options.config.input, input.shape, source);
      const partial = { options, session, input, output, spec, shape, loadMs };

      const warmStarted = performance.now();
      const probe = new ModelSession({ ...partial, classes: 0, warmUpMs: 0 });
      const scores = await probe.run(new Float32Array(shape.reduce((a, b) => a * b, 1)));
      const warmUpMs = performance.now() - warmStarted;
      const classes = scores.length;
      if (classes < 1) throw new ZerveError('BAD_REQUEST', `${source}: the model's output ${output.name} is empty`);
      if (options.labels && options.labels.length !== classes) {
        throw new ZerveError(
          'BAD_REQUEST',
          `${source}: the labels list ${options.labels.length} classes but the model outputs ${classes}`,
        );
      }
      const loaded = new ModelSession({ ...partial, classes, warmUpMs });
      log.debug({ input, output, loadMs, warmUpMs, classes }, 'model session loaded');
      return loaded;
    } catch (err) {
      await session.release().catch(() => undefined);
      throw err instanceof ZerveError
        ? err
        : new ZerveError('BAD_REQUEST', `${source}: the warm-up inference failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Runs the model on one decoded image and returns the top `topk` predictions, best first. */
  async classify(tensor: Float32Array, topk: number = this.config.topk): Promise<InferenceResult> {
    const started = performance.now();
    const scores = await this.run(tensor);
    const predictions = this.top(scores, topk);
    return { predictions, inferenceMs: performance.now() - started };
  }

  /**
   * Runs the model on one input tensor (batch 1, layout per `decodeSpec`) and returns per-class
   * probabilities (softmax applied when the config says the output is logits).
   */
  async run(tensor: Float32Array): Promise<Float32Array> {
    if (this.released) throw new ZerveError('INTERNAL', `${this.name} version ${this.version} was released`);
    const dims = this.inputShape;
    const feed =
      this.input.type === 'float16'
        ? new ort.Tensor('float16', float32ToFloat16(tensor), dims)
        : new ort.Tensor('float32', tensor, dims);
    const results = await this.session.run({ [this.input.name]: feed }, [this.output.name]);
    const value = results[this.output.name];
    if (!value || !('data' in value)) throw new ZerveError('INTERNAL', `model produced no ${this.output.name} tensor`);
    const data = value.data;
    let scores: Float32Array;
    if (data instanceof Float32Array) scores = data;
    else if (data instanceof Uint16Array) scores = float16ToFloat32(data);
    else scores = Float32Array.from(data as ArrayLike<number>); // a native Float16Array, on newer Node
    if (this.config.output.kind === 'logits') softmax(scores);
    return scores;
  }

  /** The `k` highest scores as predictions, best first (k clamped to the class count). */
  top(scores: Float32Array, k: number): Prediction[] {
    const count = Math.max(1, Math.min(k, scores.length));
    // Insertion into a short sorted list: O(n·k) beats sorting 1000 scores for the usual k ≤ 10.
    const indices: number[] = [];
    for (let i = 0; i < scores.length; i++) {
      const score = scores[i]!;
      if (Number.isNaN(score)) throw new ZerveError('INTERNAL', `${this.name} version ${this.version} produced NaN scores`);
      if (indices.length === count && score <= scores[indices[count - 1]!]!) continue;
      let at = indices.length;
      while (at > 0 && scores[indices[at - 1]!]! < score) at--;
      indices.splice(at, 0, i);
      if (indices.length > count) indices.pop();
    }
    return indices.map((index) => ({
      index,
      label: this.labels?.[index] ?? String(index),
      probability: scores[index]!,
    }));
  }

  /**
   * Runs the model on a ready tensor (`dims` as the model takes it, any batch it accepts) and answers
   * its first output as onnxruntime gives it: no softmax, float16 as bit patterns.
   */
  async runTensor(data: Float32Array | Uint16Array, dims: readonly number[]): Promise<{ data: Float32Array | Uint16Array; dims: number[] }> {
    if (this.released) throw new ZerveError('INTERNAL', `${this.name} version ${this.version} was released`);
    const feed = data instanceof Float32Array ? new ort.Tensor('float32', data, dims) : new ort.Tensor('float16', data, dims);
    const results = await this.session.run({ [this.input.name]: feed }, [this.output.name]);
    const value = results[this.output.name];
    if (!value || !('data' in value)) throw new ZerveError('INTERNAL', `model produced no ${this.output.name} tensor`);
    const out = value.data as unknown;
    const outDims = [...value.dims];
    if (out instanceof Float32Array) return { data: out, dims: outDims };
    if (this.output.type === 'float16' && ArrayBuffer.isView(out)) {
      // A Uint16Array on Node 20, a native Float16Array on newer Node: the same bits either way.
      return { data: new Uint16Array(out.buffer, out.byteOffset, out.byteLength / 2), dims: outDims };
    }
    return { data: Float32Array.from(out as ArrayLike<number>), dims: outDims };
  }

  /** One output row's class scores as `classify` reports them (softmax applied to logits), in place. */
  rowScores(row: Float32Array): Float32Array {
    if (this.config.output.kind === 'logits') softmax(row);
    return row;
  }

  /** Frees the onnxruntime session; later runs fail. Idempotent. */
  release(): Promise<void> {
    this.released ??= this.session.release();
    return this.released;
  }
}
