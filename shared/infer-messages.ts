/**
 * Message bodies of `infer.<model>`: raw tensors and batches of images to an inference worker, and
 * raw output tensors back. One definition, used by the web app's `/v2` routes and the worker.
 *
 * Request: frame 0 an {@link InferHeader} (JSON text or msgpack), then
 * - `op: "tensor"`: frame 1 the input tensor's bytes, little-endian, row-major, exactly
 *   `product(shape) × 4` (FP32) or `× 2` (FP16) bytes; it goes to onnxruntime as it is (no decode);
 * - `op: "images"`: frames 1..N one encoded image each (JPEG, PNG, ...), preprocessed exactly as
 *   `classify.<model>` does; the batch is N rows;
 * - `op: "metadata"`: no more frames.
 * Reply: frame 0 JSON, an {@link InferReplyHeader} (then frame 1 the output tensor's bytes,
 * little-endian) or a {@link ModelMetadata}; or `{"error":{code,message}}`. Numbers never travel
 * as JSON arrays or base64 on this hop.
 */
import { endianness } from 'node:os';
import { ZerveError } from './errors.ts';
import { decodeHeader, type Prediction, type RequestHeader } from './messages.ts';

// Service names live in shared/services.ts; re-exported for the modules that import them from here.
export { INFER_PREFIX, inferService } from './services.ts';

/** Tensor element types, named as the Open Inference Protocol names them. */
export type TensorDatatype = 'FP32' | 'FP16';
export const BYTES_PER_ELEMENT: Readonly<Record<TensorDatatype, number>> = { FP32: 4, FP16: 2 };

/** Most rows one request may carry. */
export const MAX_INFER_BATCH = 64;

/** A tensor as metadata states it: a dynamic dimension is -1. */
export interface TensorSpec {
  name: string;
  datatype: TensorDatatype;
  shape: number[];
}

export type InferOp = 'tensor' | 'images' | 'metadata';

export interface InferHeader extends RequestHeader {
  op: InferOp;
  /** `tensor`/`images`: the input's name, checked against the model's when given. */
  input?: string;
  /** `tensor`/`images`: the output asked for, checked against the model's when given. */
  output?: string;
  /** `op: "tensor"`: the input's datatype, which must be the model's. */
  datatype?: TensorDatatype;
  /** `op: "tensor"`: the input's shape, batch first. */
  shape?: number[];
  /** Also answer the top `classification` classes of every row (Triton's classification extension; at most the model's classes). */
  classification?: number;
}

export interface InferReplyHeader {
  model: string;
  version: string;
  /** The output tensor in frame 1 (its actual shape, batch first). */
  output: TensorSpec;
  /** Per row, the best `classification` classes, best first (scores as `classify.<model>` reports them). */
  classes?: Prediction[][];
  /** Milliseconds per stage: `decodeMs` (images only), `inferenceMs`, `totalMs`. */
  timings: Record<string, number>;
}

/** A model version's tensors, as the worker serving it reads them from the ONNX file. */
export interface ModelMetadata {
  name: string;
  version: string;
  /** Every version on disk, ascending. */
  versions: string[];
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

const isDatatype = (value: unknown): value is TensorDatatype => value === 'FP32' || value === 'FP16';

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Decodes and checks an `infer.<model>` request body.
 * @throws ZerveError BAD_REQUEST for a malformed header or frames that do not fit it
 */
export function decodeInferRequest(body: Buffer[]): { header: InferHeader; frames: Buffer[] } {
  const header = decodeHeader(body[0]) as InferHeader;
  const frames = body.slice(1);
  const { op, classification } = header;
  // K past the model's class count answers every class, as Triton does.
  if (classification !== undefined && !(Number.isSafeInteger(classification) && classification >= 1)) {
    throw new ZerveError('BAD_REQUEST', 'classification must be a positive integer');
  }
  for (const key of ['input', 'output'] as const) {
    if (header[key] !== undefined && typeof header[key] !== 'string') throw new ZerveError('BAD_REQUEST', `${key} must be a tensor name`);
  }
  if (op === 'metadata') {
    if (frames.length !== 0) throw new ZerveError('BAD_REQUEST', 'a metadata request has no frames after the header');
  } else if (op === 'images') {
    if (frames.length < 1 || frames.length > MAX_INFER_BATCH) {
      throw new ZerveError('BAD_REQUEST', `an images request carries 1 to ${MAX_INFER_BATCH} image frames, got ${frames.length}`);
    }
  } else if (op === 'tensor') {
    const { datatype, shape } = header;
    if (!isDatatype(datatype)) throw new ZerveError('BAD_REQUEST', 'datatype must be FP32 or FP16');
    if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
      throw new ZerveError('BAD_REQUEST', 'shape must be a list of positive integers');
    }
    if (shape[0]! > MAX_INFER_BATCH) throw new ZerveError('BAD_REQUEST', `the batch is ${shape[0]}; the limit is ${MAX_INFER_BATCH}`);
    if (frames.length !== 1) throw new ZerveError('BAD_REQUEST', `a tensor request carries 1 tensor frame, got ${frames.length}`);
    const expected = elementCount(shape) * BYTES_PER_ELEMENT[datatype];
    if (frames[0]!.length !== expected) {
      throw new ZerveError('BAD_REQUEST', `a ${datatype} tensor of shape [${shape.join(',')}] is ${expected} bytes, got ${frames[0]!.length}`);
    }
  } else {
    throw new ZerveError('BAD_REQUEST', 'op must be "tensor", "images" or "metadata"');
  }
  return { header, frames };
}

// Typed arrays use the host's byte order; the wire is little-endian.
if (endianness() !== 'LE') throw new Error('zerve tensors travel little-endian; this host is big-endian');

/** A view of little-endian tensor bytes as the datatype's typed array (copied when misaligned). */
export function tensorView(bytes: Buffer, datatype: 'FP32'): Float32Array;
export function tensorView(bytes: Buffer, datatype: 'FP16'): Uint16Array;
export function tensorView(bytes: Buffer, datatype: TensorDatatype): Float32Array | Uint16Array;
export function tensorView(bytes: Buffer, datatype: TensorDatatype): Float32Array | Uint16Array {
  const size = BYTES_PER_ELEMENT[datatype];
  if (bytes.length % size !== 0) throw new ZerveError('BAD_REQUEST', `${bytes.length} bytes are not a whole number of ${datatype} values`);
  const aligned = bytes.byteOffset % size === 0 ? bytes : Buffer.from(bytes);
  const Type = datatype === 'FP32' ? Float32Array : Uint16Array;
  return new Type(aligned.buffer as ArrayBuffer, aligned.byteOffset, aligned.length / size);
}

/** The bytes of a typed array, without copying. */
export function tensorBytes(values: Float32Array | Uint16Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
}
