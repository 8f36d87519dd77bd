/**
 * HTTP bodies of the Open Inference Protocol's infer route, to and from `infer.<model>` messages:
 * the JSON request with Triton's binary data extension (`Inference-Header-Content-Length`,
 * `parameters.binary_data_size`, BYTES elements as a 4-byte little-endian length and the bytes),
 * and the response with JSON `data`, binary outputs or Triton's classification strings.
 */
import { Ajv } from 'ajv';
import { ZerveError } from '../shared/errors.ts';
import {
  BYTES_PER_ELEMENT,
  elementCount,
  tensorBytes,
  tensorView,
  type InferHeader,
  type InferReplyHeader,
  type TensorDatatype,
} from '../shared/infer-messages.ts';
import { float16ToFloat32, float32ToFloat16 } from '../shared/float16.ts';
import { INFER_REQUEST_SCHEMA } from './oip-openapi.ts';

export interface OipInput {
  name: string;
  shape: number[];
  datatype: string;
  parameters?: { binary_data_size?: number; content_type?: 'base64'; [key: string]: unknown };
  data?: unknown;
}

export interface OipRequestedOutput {
  name: string;
  parameters?: { binary_data?: boolean; classification?: number; [key: string]: unknown };
}

/** The JSON part of an infer request. */
export interface OipInferRequest {
  id?: string;
  parameters?: { binary_data_output?: boolean; [key: string]: unknown };
  inputs: OipInput[];
  outputs?: OipRequestedOutput[];
}

export interface OipOutput {
  name: string;
  datatype: TensorDatatype | 'BYTES';
  shape: number[];
  parameters?: { binary_data_size: number };
  data?: number[] | string[];
}

export interface OipInferResponse {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: OipOutput[];
}

const validateRequest = new Ajv({ allErrors: true, strict: true }).compile<OipInferRequest>(INFER_REQUEST_SCHEMA);

function badRequest(message: string, details?: Record<string, unknown>): ZerveError {
  return new ZerveError('BAD_REQUEST', message, details ? { details } : undefined);
}

/**
 * Splits a body into its JSON and the binary data of each input, parses and checks the JSON.
 * @throws ZerveError BAD_REQUEST: malformed JSON, a request that does not fit the schema, binary
 *   sizes that do not add up to the binary section
 */
export function parseInferBody(body: Buffer, headerLength: string | undefined): { request: OipInferRequest; binaries: (Buffer | undefined)[] } {
  let jsonLength = body.length;
  if (headerLength !== undefined) {
    jsonLength = Number(headerLength);
    if (!(Number.isInteger(jsonLength) && jsonLength >= 1 && jsonLength <= body.length)) {
      throw badRequest(`Inference-Header-Content-Length is ${JSON.stringify(headerLength)}; the body has ${body.length} bytes`);
    }
  }
  let request: unknown;
  try {
    request = JSON.parse(body.subarray(0, jsonLength).toString('utf8'));
  } catch (err) {
    throw new ZerveError('BAD_REQUEST', `the inference request is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!validateRequest(request)) {
    const first = validateRequest.errors?.[0];
    throw badRequest(`the inference request ${first?.instancePath || ''} ${first?.message ?? 'is invalid'}`.replace(/\s+/g, ' '), {
      errors: validateRequest.errors?.map((e) => ({ at: e.instancePath, message: e.message })),
    });
  }
  const binary = body.subarray(jsonLength);
  let offset = 0;
  const binaries = request.inputs.map((input) => {
    const size = input.parameters?.binary_data_size;
    if (size === undefined) {
      if (input.data === undefined) throw badRequest(`input ${input.name} has neither data nor parameters.binary_data_size`);
      return undefined;
    }
    if (input.data !== undefined) throw badRequest(`input ${input.name} has both data and parameters.binary_data_size`);
    if (offset + size > binary.length) {
      throw badRequest(`input ${input.name} has binary_data_size ${size}, but only ${binary.length - offset} bytes of binary data are left`);
    }
    const slice = binary.subarray(offset, offset + size);
    offset += size;
    return slice;
  });
  if (offset !== binary.length) {
    throw badRequest(`the binary data is ${binary.length} bytes, but the inputs' binary_data_size add up to ${offset}`);
  }
  return { request, binaries };
}

/** Splits a serialized BYTES tensor (per element: 4-byte little-endian length, then the bytes). */
export function deserializeBytes(raw: Buffer, name: string): Buffer[] {
  const elements: Buffer[] = [];
  let offset = 0;
  while (offset < raw.length) {
    if (offset + 4 > raw.length) throw badRequest(`BYTES input ${name}: element ${elements.length} is cut off in its length`);
    const length = raw.readUInt32LE(offset);
    offset += 4;
    if (offset + length > raw.length) {
      throw badRequest(`BYTES input ${name}: element ${elements.length} says ${length} bytes, ${raw.length - offset} are left`);
    }
    elements.push(raw.subarray(offset, offset + length));
    offset += length;
  }
  return elements;
}

/** Serializes BYTES elements (4-byte little-endian length, then the bytes, each). */
export function serializeBytes(elements: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const element of elements) {
    const length = Buffer.alloc(4);
    length.writeUInt32LE(element.length);
    parts.push(length, element);
  }
  return Buffer.concat(parts);
}

/**
 * An input's JSON `data` in row-major order: flat, or nested at most as deep as its shape (the protocol
 * allows both). Iterative, so that hostile nesting is a bad request, never a stack overflow.
 */
function flatData(input: OipInput): unknown[] {
  if (!Array.isArray(input.data)) return [input.data];
  const values: unknown[] = [];
  const stack: { items: unknown[]; at: number }[] = [{ items: input.data, at: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.at === top.items.length) {
      stack.pop();
      continue;
    }
    const item = top.items[top.at++];
    if (!Array.isArray(item)) {
      values.push(item);
      continue;
    }
    if (stack.length >= input.shape.length) throw badRequest(`input ${input.name}: data is nested deeper than its shape [${input.shape.join(',')}]`);
    stack.push({ items: item, at: 0 });
  }
  return values;
}

/** Standard or URL-safe base64, padded or not. */
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Encoded images of a BYTES input: binary elements, or JSON strings (UTF-8, or base64 when the parameter says so). */
function imagesOf(input: OipInput, binary: Buffer | undefined): Buffer[] {
  let elements: Buffer[];
  if (binary) {
    elements = deserializeBytes(binary, input.name);
  } else {
    const data = flatData(input);
    if (!data.every((d): d is string => typeof d === 'string')) throw badRequest(`BYTES input ${input.name}: data must be strings`);
    if (input.parameters?.content_type === 'base64') {
      // Buffer.from skips characters outside the alphabet: say so instead of decoding garbage into BAD_IMAGE.
      const bad = data.findIndex((d) => !BASE64.test(d));
      if (bad >= 0) throw badRequest(`BYTES input ${input.name}: element ${bad} is not base64 (content_type says it is)`);
      elements = data.map((d) => Buffer.from(d, 'base64'));
    } else {
      elements = data.map((d) => Buffer.from(d, 'utf8'));
    }
  }
  const { shape } = input;
  if (!(shape.length === 1 || (shape.length === 2 && shape[1] === 1))) {
    throw badRequest(`BYTES input ${input.name}: shape must be [N] or [N,1] (N images), got [${shape.join(',')}]`);
  }
  if (elements.length !== elementCount(shape)) {
    throw badRequest(`BYTES input ${input.name}: shape [${shape.join(',')}] says ${elementCount(shape)} images, got ${elements.length}`);
  }
  return elements;
}

/** The raw little-endian bytes of an FP32/FP16 input: binary as it came, or JSON numbers converted. */
function tensorOf(input: OipInput, datatype: TensorDatatype, binary: Buffer | undefined): Buffer {
  const count = elementCount(input.shape);
  if (binary) {
    if (binary.length !== count * BYTES_PER_ELEMENT[datatype]) {
      throw badRequest(
        `input ${input.name}: a ${datatype} tensor of shape [${input.shape.join(',')}] is ${count * BYTES_PER_ELEMENT[datatype]} bytes; binary_data_size is ${binary.length}`,
      );
    }
    return binary;
  }
  const data = flatData(input);
  if (!data.every((d): d is number => typeof d === 'number')) throw badRequest(`input ${input.name}: data must be numbers`);
  if (data.length !== count) {
    throw badRequest(`input ${input.name}: shape [${input.shape.join(',')}] has ${count} values, data has ${data.length}`);
  }
  const values = Float32Array.from(data);
  return tensorBytes(datatype === 'FP16' ? float32ToFloat16(values) : values);
}

/**
 * The `infer.<model>` request for a parsed HTTP request: BYTES → `op: "images"`, one frame per image;
 * FP32/FP16 → `op: "tensor"`, one frame of little-endian bytes.
 * @throws ZerveError BAD_REQUEST for an unsupported datatype or data that does not fit its shape
 */
export function toWorkerRequest(
  request: OipInferRequest,
  binaries: (Buffer | undefined)[],
  base: Pick<InferHeader, 'version' | 'deadlineMs'>,
): { header: InferHeader; frames: Buffer[] } {
  const input = request.inputs[0]!;
  const output = request.outputs?.[0];
  const header: InferHeader = { ...base, op: 'images', input: input.name };
  if (output) header.output = output.name;
  if (output?.parameters?.classification !== undefined) header.classification = output.parameters.classification;
  if (input.datatype === 'BYTES') return { header, frames: imagesOf(input, binaries[0]) };
  if (input.datatype !== 'FP32' && input.datatype !== 'FP16') {
    throw badRequest(`input ${input.name} is ${input.datatype}; send FP32 or FP16 (the model's input datatype), or BYTES (encoded images)`);
  }
  if (!input.shape.every((d) => d >= 1)) throw badRequest(`input ${input.name}: every dimension must be at least 1`);
  return {
    header: { ...header, op: 'tensor', datatype: input.datatype, shape: input.shape },
    frames: [tensorOf(input, input.datatype, binaries[0])],
  };
}

/** Triton's classification string: `"score:index:label"`, the score as C++'s `std::to_string` prints it. */
function classString(probability: number, index: number, label: string): string {
  return `${probability.toFixed(6)}:${index}:${label}`;
}

/** The HTTP answer to a worker's reply: the JSON, and the binary section when an output is asked binary. */
export function encodeInferResponse(request: OipInferRequest, reply: InferReplyHeader, output: Buffer): { json: OipInferResponse; binary?: Buffer } {
  const asked = request.outputs?.[0];
  const binaryOut = asked?.parameters?.binary_data ?? request.parameters?.binary_data_output ?? false;
  let entry: OipOutput;
  let bytes: Buffer | undefined;
  if (reply.classes) {
    const strings = reply.classes.map((row) => row.map((p) => classString(p.probability, p.index, p.label)));
    entry = { name: reply.output.name, datatype: 'BYTES', shape: [strings.length, strings[0]?.length ?? 0] };
    if (binaryOut) bytes = serializeBytes(strings.flat().map((s) => Buffer.from(s)));
    else entry.data = strings.flat();
  } else {
    entry = { name: reply.output.name, datatype: reply.output.datatype, shape: reply.output.shape };
    if (binaryOut) bytes = output;
    else {
      const values = tensorView(output, reply.output.datatype);
      entry.data = Array.from(values instanceof Uint16Array ? float16ToFloat32(values) : values);
    }
  }
  if (bytes) entry.parameters = { binary_data_size: bytes.length };
  const json: OipInferResponse = { model_name: reply.model, model_version: reply.version, outputs: [entry] };
  if (request.id !== undefined) json.id = request.id;
  return bytes ? { json, binary: bytes } : { json };
}
