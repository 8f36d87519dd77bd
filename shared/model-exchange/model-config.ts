/**
 * The per-version `config.json` that sits next to `model.onnx` in
 * `<models>/<name>/<version>/`: how to turn an image into the model's input tensor and how to read
 * its output. Tensor names and dtypes are not here: they come from the model itself.
 *
 * ```json
 * {
 *   "input": { "width": 224, "height": 224, "resize": "cover", "channels": "bgr",
 *              "range": [0, 255], "layout": "NCHW" },
 *   "output": { "kind": "probabilities" },
 *   "labels": "labels.txt",
 *   "topk": 5
 * }
 * ```
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ZerveError } from '../errors.ts';

export type ResizePolicy = 'cover' | 'contain' | 'fill';
export type ChannelOrder = 'rgb' | 'bgr' | 'grey';
export type TensorLayout = 'NCHW' | 'NHWC';
export type OutputKind = 'probabilities' | 'logits';
export type Background = 'white' | 'black';

export interface InputConfig {
  /** Tensor width in pixels. @defaultValue the model's input width (required if it is symbolic) */
  width?: number;
  /** Tensor height in pixels. @defaultValue the model's input height (required if it is symbolic) */
  height?: number;
  /**
   * How the image is fitted to width × height: `cover` scales and centre-crops, `contain` scales
   * and letterboxes on `background`, `fill` stretches. @defaultValue 'cover'
   */
  resize: ResizePolicy;
  /** Channel order of the tensor; `grey` is one channel. @defaultValue 'grey' for 1-channel models, else 'rgb' */
  channels?: ChannelOrder;
  /** Values that pixel 0 and pixel 255 map to, linearly, e.g. [0, 255], [0, 1], [-1, 1]. @defaultValue [0, 255] */
  range: [number, number];
  /** Subtracted after `range`, one per tensor channel in tensor order (BGR for `bgr`). @defaultValue none */
  mean?: number[];
  /** Divides after `mean`, one per tensor channel in tensor order. @defaultValue none */
  std?: number[];
  /** Tensor layout. @defaultValue inferred from the model's input shape, else 'NCHW' */
  layout?: TensorLayout;
  /**
   * What transparent pixels (and `contain` bars) become. @defaultValue 'white' for rgb/bgr
   * (photos on a page), 'black' for grey (MNIST-style: ink is white on black)
   */
  background?: Background;
}

export interface OutputConfig {
  /** `logits` get a softmax; `probabilities` are used as they are. @defaultValue 'probabilities' */
  kind: OutputKind;
}

/** Everything the decoder needs to know about the tensor it produces. */
export interface DecodeSpec {
  width: number;
  height: number;
  resize: ResizePolicy;
  channels: ChannelOrder;
  range: [number, number];
  mean?: number[];
  std?: number[];
  layout: TensorLayout;
  background: Background;
}

export interface ModelConfig {
  input: InputConfig;
  output: OutputConfig;
  /** Labels file in the version folder, one label per line, line N = class N. @defaultValue none: labels are class indices */
  labels?: string;
  /** Predictions returned when the request does not say. @defaultValue 5 */
  topk: number;
  /** Free text shown by `zerve models` and the web app. */
  description?: string;
}

export const MODEL_CONFIG_FILE = 'config.json';
export const MODEL_FILE = 'model.onnx';
export const LABELS_FILE = 'labels.txt';
export const MAX_TOPK = 1000;

const RESIZE_POLICIES: readonly ResizePolicy[] = ['cover', 'contain', 'fill'];
const CHANNEL_ORDERS: readonly ChannelOrder[] = ['rgb', 'bgr', 'grey'];
const LAYOUTS: readonly TensorLayout[] = ['NCHW', 'NHWC'];
const OUTPUT_KINDS: readonly OutputKind[] = ['probabilities', 'logits'];
const BACKGROUNDS: readonly Background[] = ['white', 'black'];
const MAX_SIDE = 16384;

/** Number of tensor channels of a channel order. */
export function channelCount(channels: ChannelOrder): number {
  return channels === 'grey' ? 1 : 3;
}

function fail(source: string, message: string): never {
  throw new ZerveError('BAD_REQUEST', `${source}: ${message}`, { details: { source } });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkKeys(source: string, where: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      fail(source, `unknown key ${where}${key} (allowed: ${allowed.join(', ')})`);
    }
  }
}

function oneOf<T extends string>(source: string, key: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    fail(source, `${key} must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}; got ${JSON.stringify(value)}`);
  }
  return value as T;
}

function side(source: string, key: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > MAX_SIDE) {
    fail(source, `${key} must be an integer from 1 to ${MAX_SIDE}; got ${JSON.stringify(value)}`);
  }
  return value as number;
}

function numbers(source: string, key: string, value: unknown, lengths: number[], positive = false): number[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !lengths.includes(value.length) || !value.every((n) => typeof n === 'number' && Number.isFinite(n))) {
    fail(source, `${key} must be an array of ${lengths.join(' or ')} finite numbers (one per tensor channel); got ${JSON.stringify(value)}`);
  }
  if (positive && !value.every((n: number) => n > 0)) fail(source, `${key} values must be greater than 0`);
  return value as number[];
}

/**
 * Validates a parsed `config.json` strictly (unknown keys and wrong types are errors) and fills
 * in the defaults.
 * @param source names the file in error messages
 * @throws ZerveError BAD_REQUEST naming the offending key
 */
export function parseModelConfig(value: unknown, source = MODEL_CONFIG_FILE): ModelConfig {
  if (!isObject(value)) fail(source, 'must be a JSON object');
  checkKeys(source, '', value, ['input', 'output', 'labels', 'topk', 'description']);
  const input = value.input ?? {};
  const output = value.output ?? {};
  if (!isObject(input)) fail(source, 'input must be an object');
  if (!isObject(output)) fail(source, 'output must be an object');
  checkKeys(source, 'input.', input, ['width', 'height', 'resize', 'channels', 'range', 'mean', 'std', 'layout', 'background']);
  checkKeys(source, 'output.', output, ['kind']);

  const channels = input.channels === undefined ? undefined : oneOf(source, 'input.channels', input.channels, CHANNEL_ORDERS, 'rgb');
  const counts = channels === undefined ? [1, 3] : [channelCount(channels)];
  let range: [number, number] = [0, 255];
  if (input.range !== undefined) {
    const r = input.range;
    if (!Array.isArray(r) || r.length !== 2 || !r.every((n) => typeof n === 'number' && Number.isFinite(n)) || r[0] === r[1]) {
      fail(source, `input.range must be two different finite numbers such as [0, 255] or [0, 1]; got ${JSON.stringify(r)}`);
    }
    range = [r[0] as number, r[1] as number];
  }
  const parsedInput: InputConfig = {
    resize: oneOf(source, 'input.resize', input.resize, RESIZE_POLICIES, 'cover'),
    range,
  };
  if (channels !== undefined) parsedInput.channels = channels;
  if (input.background !== undefined) parsedInput.background = oneOf(source, 'input.background', input.background, BACKGROUNDS, 'white');
  const width = side(source, 'input.width', input.width);
  const height = side(source, 'input.height', input.height);
  const mean = numbers(source, 'input.mean', input.mean, counts);
  const std = numbers(source, 'input.std', input.std, counts, true);
  if (mean && std && mean.length !== std.length) fail(source, 'input.mean and input.std must have the same length');
  if (width !== undefined) parsedInput.width = width;
  if (height !== undefined) parsedInput.height = height;
  if (mean) parsedInput.mean = mean;
  if (std) parsedInput.std = std;
  if (input.layout !== undefined) parsedInput.layout = oneOf(source, 'input.layout', input.layout, LAYOUTS, 'NCHW');

  const config: ModelConfig = {
    input: parsedInput,
    output: { kind: oneOf(source, 'output.kind', output.kind, OUTPUT_KINDS, 'probabilities') },
    topk: 5,
  };
  if (value.topk !== undefined) {
    if (!Number.isInteger(value.topk) || (value.topk as number) < 1 || (value.topk as number) > MAX_TOPK) {
      fail(source, `topk must be an integer from 1 to ${MAX_TOPK}; got ${JSON.stringify(value.topk)}`);
    }
    config.topk = value.topk as number;
  }
  if (value.labels !== undefined) {
    const labels = value.labels;
    // A bare file name: the labels must live in the version folder, never elsewhere on disk.
    if (typeof labels !== 'string' || labels.length === 0 || labels !== path.basename(labels) || labels === '..' || labels.includes('\\')) {
      fail(source, `labels must be a file name in the version folder, such as "labels.txt"; got ${JSON.stringify(labels)}`);
    }
    config.labels = labels;
  }
  if (value.description !== undefined) {
    if (typeof value.description !== 'string') fail(source, 'description must be a string');
    config.description = value.description;
  }
  return config;
}

/**
 * Reads and validates `<dir>/config.json`.
 * @throws ZerveError BAD_REQUEST when it is missing, not JSON or invalid
 */
export async function readModelConfig(dir: string): Promise<ModelConfig> {
  const file = path.join(dir, MODEL_CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ZerveError('BAD_REQUEST', `${file}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ZerveError('BAD_REQUEST', `${file}: not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  return parseModelConfig(value, file);
}

/**
 * Reads a labels file: one label per line, line N = class N; `\r\n` accepted, a final newline ignored.
 * @throws ZerveError BAD_REQUEST when it cannot be read or is empty
 */
export async function readLabels(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ZerveError('BAD_REQUEST', `${file}: cannot read labels: ${(err as Error).message}`, { cause: err });
  }
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === '') lines.pop();
  if (lines.length === 0) throw new ZerveError('BAD_REQUEST', `${file}: labels file is empty`);
  return lines;
}
