import { ZerveError } from '../../shared/errors.ts';
import {
  decodeInferRequest,
  elementCount,
  tensorBytes,
  tensorView,
  type InferHeader,
  type InferReplyHeader,
  type ModelMetadata,
  type TensorDatatype,
  type TensorSpec,
} from '../../shared/infer-messages.ts';
import { encodeJson, type Prediction } from '../../shared/messages.ts';
import { float16ToFloat32, float32ToFloat16 } from '../../shared/float16.ts';
import type { InferenceEngine } from './inference-engine.ts';
import type { ModelSession, TensorInfo } from '../../shared/model-exchange/model-session.ts';
import { throwIfAborted } from '../../shared/abort.ts';

const DATATYPE_OF = { float32: 'FP32', float16: 'FP16' } as const satisfies Record<TensorInfo['type'], TensorDatatype>;

/** A tensor as the model declares it, symbolic dimensions as -1. */
function specOf(info: TensorInfo): TensorSpec {
  return { name: info.name, datatype: DATATYPE_OF[info.type], shape: info.shape.map((d) => (typeof d === 'number' && d >= 1 ? d : -1)) };
}

/**
 * The `infer.<model>` service of an inference worker (see `shared/infer-messages.ts`): ready tensors
 * straight to the session, batches of images decoded as `classify.<model>` decodes them, and the
 * model's tensor metadata. A model with a dynamic batch dimension runs a batch in one session run;
 * a model whose batch is fixed to 1 runs once per row.
 */
export class TensorInference {
  /** @param onReply called with the header of every successful tensor or images reply (the worker's metrics) */
  constructor(
    private readonly engine: InferenceEngine,
    private readonly onReply?: (reply: InferReplyHeader) => void,
  ) {}

  /**
   * Answers one `infer.<model>` request body.
   * @throws ZerveError BAD_REQUEST (malformed, wrong datatype or shape), BAD_IMAGE, IMAGE_TOO_LARGE,
   *   UNKNOWN_MODEL, CANCELED, INTERNAL
   */
  async handle(model: string, body: Buffer[], signal?: AbortSignal): Promise<Buffer[]> {
    const started = performance.now();
    const { header, frames } = decodeInferRequest(body);
    return this.engine.withSession(model, header.version, async (session, versions) => {
      if (header.op === 'metadata') {
        const metadata: ModelMetadata = { name: model, version: session.version, versions, inputs: [specOf(session.input)], outputs: [specOf(session.output)] };
        return [encodeJson(metadata)];
      }
      for (const [key, info] of [['input', session.input], ['output', session.output]] as const) {
        const name = header[key];
        if (name !== undefined && name !== info.name) {
          throw new ZerveError('BAD_REQUEST', `model ${model} has no ${key} ${JSON.stringify(name)}; its ${key} is ${info.name}`);
        }
      }
      const timings: Record<string, number> = {};
      const { data, shape } = header.op === 'tensor' ? this.tensorInput(session, header, frames[0]!) : await this.imagesInput(session, frames, timings, signal);
      throwIfAborted(signal);
      const inferenceStarted = performance.now();
      const output = await this.run(session, data, shape, signal);
      timings.inferenceMs = performance.now() - inferenceStarted;
      const reply: InferReplyHeader = {
        model,
        version: session.version,
        output: { name: session.output.name, datatype: DATATYPE_OF[session.output.type], shape: output.dims },
        timings,
      };
      if (header.classification !== undefined) reply.classes = this.classify(session, output.data, shape[0]!, header.classification, header.op === 'tensor');
      timings.totalMs = performance.now() - started;
      this.onReply?.(reply);
      return [encodeJson(reply), tensorBytes(output.data)];
    });
  }

  /** Checks a ready tensor against the model's input: same datatype, same rank, every fixed dimension equal. */
  private tensorInput(session: ModelSession, header: InferHeader, frame: Buffer): { data: Float32Array | Uint16Array; shape: number[] } {
    const expected = specOf(session.input);
    const datatype = header.datatype!;
    const shape = header.shape!;
    if (datatype !== expected.datatype) {
      throw new ZerveError('BAD_REQUEST', `input ${expected.name} is ${expected.datatype}; got ${datatype}`);
    }
    const fits =
      shape.length === expected.shape.length &&
      // A batch fixed to 1 still takes N rows: they run one at a time.
      shape.every((d, i) => expected.shape[i] === -1 || expected.shape[i] === d || (i === 0 && expected.shape[0] === 1));
    if (!fits) {
      throw new ZerveError('BAD_REQUEST', `input ${expected.name} has shape [${expected.shape.join(',')}]; got [${shape.join(',')}]`);
    }
    const data = tensorView(frame, datatype);
    const at = firstNonFinite(data);
    if (at >= 0) throw new ZerveError('BAD_REQUEST', `input ${expected.name}: value ${at} is not a finite number (NaN or infinity)`);
    return { data, shape };
  }

  /** Decodes every image (in parallel, in libuv's pool) into one batch tensor of the model's input type. */
  private async imagesInput(
    session: ModelSession,
    images: Buffer[],
    timings: Record<string, number>,
    signal: AbortSignal | undefined,
  ): Promise<{ data: Float32Array | Uint16Array; shape: number[] }> {
    const started = performance.now();
    const decoded = await Promise.all(images.map((image) => this.engine.decodeImage(session, image, signal)));
    const rowLength = elementCount(session.inputShape);
    const batch = new Float32Array(rowLength * images.length);
    decoded.forEach((image, i) => batch.set(image.data, i * rowLength));
    timings.decodeMs = performance.now() - started;
    const shape = [images.length, ...session.inputShape.slice(1)];
    return { data: session.input.type === 'float16' ? float32ToFloat16(batch) : batch, shape };
  }

  /** One session run for a dynamic batch; one run per row when the model's batch is fixed to 1. */
  private async run(
    session: ModelSession,
    data: Float32Array | Uint16Array,
    shape: number[],
    signal: AbortSignal | undefined,
  ): Promise<{ data: Float32Array | Uint16Array; dims: number[] }> {
    const rows = shape[0]!;
    if (session.input.shape[0] !== 1 || rows === 1) {
      const output = await session.runTensor(data, shape);
      if (output.dims[0] !== rows) throw new ZerveError('INTERNAL', `${session.name} answered ${output.dims[0]} rows for ${rows}`);
      return output;
    }
    const rowLength = data.length / rows;
    const rowShape = [1, ...shape.slice(1)];
    const outputs: (Float32Array | Uint16Array)[] = [];
    let dims: number[] = [];
    for (let row = 0; row < rows; row++) {
      throwIfAborted(signal);
      const output = await session.runTensor(data.subarray(row * rowLength, (row + 1) * rowLength), rowShape);
      outputs.push(output.data);
      dims = output.dims;
    }
    const rowOut = outputs[0]!.length;
    const all = outputs[0] instanceof Float32Array ? new Float32Array(rowOut * rows) : new Uint16Array(rowOut * rows);
    outputs.forEach((out, i) => all.set(out, i * rowOut));
    return { data: all, dims: [rows, ...dims.slice(1)] };
  }

  /**
   * Top `k` classes of each output row, scored as `classify.<model>` scores them. NaN scores from a
   * client's tensor (finite values the model overflows on) are the request's fault, not ours.
   */
  private classify(session: ModelSession, output: Float32Array | Uint16Array, rows: number, k: number, clientTensor: boolean): Prediction[][] {
    try {
      return this.topOfRows(session, output, rows, k);
    } catch (err) {
      if (clientTensor && err instanceof ZerveError && err.code === 'INTERNAL') {
        throw new ZerveError('BAD_REQUEST', `model ${session.name} produced no scores for this tensor (NaN): are its values in the model's range?`, { cause: err });
      }
      throw err;
    }
  }

  private topOfRows(session: ModelSession, output: Float32Array | Uint16Array, rows: number, k: number): Prediction[][] {
    const rowLength = output.length / rows;
    const classes: Prediction[][] = [];
    for (let row = 0; row < rows; row++) {
      const values = output.subarray(row * rowLength, (row + 1) * rowLength);
      const scores = values instanceof Uint16Array ? float16ToFloat32(values) : Float32Array.from(values);
      classes.push(session.top(session.rowScores(scores), k));
    }
    return classes;
  }
}

/** Index of the first NaN or infinity (FP16: exponent bits all set), or -1. */
function firstNonFinite(values: Float32Array | Uint16Array): number {
  if (values instanceof Uint16Array) {
    for (let i = 0; i < values.length; i++) if ((values[i]! & 0x7c00) === 0x7c00) return i;
    return -1;
  }
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) return i;
  return -1;
}
