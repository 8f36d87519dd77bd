/**
 * Adds a model version to the repository (`zerve models add`). The version folder is filled in the
 * order a polling engine relies on: model.onnx and labels.txt first, config.json last and atomically
 * (temporary file, fsync, rename), so the version becomes visible only when complete.
 */
import { constants } from 'node:fs';
import { copyFile, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_INFERENCE_OPTIONS } from '../config.ts';
import { ZerveError } from '../errors.ts';
import {
  LABELS_FILE,
  MODEL_CONFIG_FILE,
  MODEL_FILE,
  parseModelConfig,
  readLabels,
  type ChannelOrder,
  type ModelConfig,
  type ResizePolicy,
  type TensorLayout,
} from './model-config.ts';
import { MODEL_NAME_PATTERN } from './model-repository.ts';
import { ModelSession } from './model-session.ts';
import { ModelTombstones } from './model-tombstones.ts';

export interface AddModelVersionOptions {
  /** Model name; served as `classify.<name>`. */
  name: string;
  /** The ONNX file to add. */
  file: string;
  /** Labels file, one label per line (line N = class N). @defaultValue none: labels are class indices */
  labels?: string;
  /** Tensor channel order. @defaultValue 'grey' for 1-channel models, else 'rgb' */
  channels?: ChannelOrder | string;
  /** Tensor size, `{ width, height }` or `'WxH'`. @defaultValue from the model's input shape */
  size?: { width: number; height: number } | string;
  /** Values pixel 0 and 255 map to: `[0, 255]`, `[0, 1]`, or `'0-255'`, `'0-1'`. @defaultValue [0, 255] */
  range?: [number, number] | string;
  /** Per-channel mean, in tensor channel order; an array or `'a,b,c'`. @defaultValue none */
  mean?: number[] | string;
  /** Per-channel standard deviation, in tensor channel order; an array or `'a,b,c'`. @defaultValue none */
  std?: number[] | string;
  /** The model outputs logits: softmax is applied. @defaultValue false (outputs are probabilities) */
  logits?: boolean;
  /** How images are fitted to the tensor size. @defaultValue 'cover' */
  resize?: ResizePolicy;
  /** Tensor layout. @defaultValue inferred from the model's input shape */
  layout?: TensorLayout;
  /** Predictions returned by default. @defaultValue 5 */
  topk?: number;
  description?: string;
  /** Model repository folder. @defaultValue './models' */
  models?: string;
}

export interface AddedModelVersion {
  name: string;
  version: string;
  /** Absolute path of the new version folder. */
  path: string;
  /** The config.json written, with everything inferred made explicit. */
  config: ModelConfig;
}

function badOption(message: string): ZerveError {
  return new ZerveError('BAD_REQUEST', message);
}

/** Parses `'224x224'` (also `'224X224'`, `'224,224'`). */
export function parseSize(value: string): { width: number; height: number } {
  const match = /^\s*(\d+)\s*[xX,]\s*(\d+)\s*$/.exec(value);
  if (!match) throw badOption(`size must be WIDTHxHEIGHT such as 224x224; got ${JSON.stringify(value)}`);
  return { width: Number(match[1]), height: Number(match[2]) };
}

/** Parses `'0-255'`, `'0-1'`, `'-1..1'` or `'-1,1'`. */
export function parseRange(value: string): [number, number] {
  const number = String.raw`-?(?:\d+\.?\d*|\.\d+)`;
  const match = new RegExp(String.raw`^\s*(${number})\s*(?:\.\.|,|-)\s*(${number})\s*$`).exec(value);
  if (!match) throw badOption(`range must be LOW-HIGH such as 0-255 or 0-1; got ${JSON.stringify(value)}`);
  return [Number(match[1]), Number(match[2])];
}

/** Parses `'0.485,0.456,0.406'`. */
export function parseNumberList(value: string, what: string): number[] {
  const parts = value.split(',').map((p) => p.trim());
  const numbers = parts.map(Number);
  if (parts.some((p) => p === '') || numbers.some((n) => !Number.isFinite(n))) {
    throw badOption(`${what} must be comma-separated numbers such as 0.485,0.456,0.406; got ${JSON.stringify(value)}`);
  }
  return numbers;
}

/** Next free numeric version: one more than the highest numeric folder name (complete or not) or removed version. */
async function nextVersion(modelDir: string): Promise<number> {
  let highest = 0;
  const removed = await new ModelTombstones(path.dirname(modelDir)).versionsOf(path.basename(modelDir));
  for (const name of [...(await readdir(modelDir).catch(() => [] as string[])), ...removed]) {
    if (/^\d+$/.test(name)) highest = Math.max(highest, Number(name));
  }
  return highest + 1;
}

async function syncFile(file: string): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

async function writeFileAtomically(file: string, text: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const handle = await open(tmp, 'w');
  try {
    await handle.writeFile(text);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
}

/**
 * Validates an ONNX file by loading it in onnxruntime against the config the options describe
 * (including a warm-up inference and the labels count), then adds it as the next version
 * (`1`, `2`, ...) of `name`. Nothing is written when validation fails.
 *
 * @example
 * const { version } = await addModelVersion({ name: 'squeezenet', file: 'model.onnx', labels: 'labels.txt', channels: 'bgr' });
 * @throws ZerveError BAD_REQUEST for bad options, a file that is not a loadable ONNX model, or
 *   a model that does not fit its options
 */
export async function addModelVersion(options: AddModelVersionOptions): Promise<AddedModelVersion> {
  const { name, file } = options;
  if (typeof name !== 'string' || !MODEL_NAME_PATTERN.test(name)) {
    throw badOption(`model name must match ${MODEL_NAME_PATTERN} (letters, digits, _ and -); got ${JSON.stringify(name)}`);
  }
  const info = await stat(file).catch((err: unknown) => {
    throw badOption(`cannot read model file ${file}: ${(err as Error).message}`);
  });
  if (!info.isFile() || info.size === 0) throw badOption(`model file ${file} is not a non-empty file`);

  const input: Record<string, unknown> = {};
  if (options.channels !== undefined) input.channels = options.channels;
  if (options.size !== undefined) {
    const size = typeof options.size === 'string' ? parseSize(options.size) : options.size;
    input.width = size.width;
    input.height = size.height;
  }
  if (options.range !== undefined) input.range = typeof options.range === 'string' ? parseRange(options.range) : options.range;
  if (options.mean !== undefined) input.mean = typeof options.mean === 'string' ? parseNumberList(options.mean, 'mean') : options.mean;
  if (options.std !== undefined) input.std = typeof options.std === 'string' ? parseNumberList(options.std, 'std') : options.std;
  if (options.resize !== undefined) input.resize = options.resize;
  if (options.layout !== undefined) input.layout = options.layout;
  const draft: Record<string, unknown> = { input, output: { kind: options.logits ? 'logits' : 'probabilities' } };
  if (options.labels !== undefined) draft.labels = LABELS_FILE;
  if (options.topk !== undefined) draft.topk = options.topk;
  if (options.description !== undefined) draft.description = options.description;
  const parsed = parseModelConfig(draft, 'options');
  const labels = options.labels === undefined ? undefined : await readLabels(options.labels);

  // Load it as the engine will, so a file the engine cannot serve is refused here and now.
  const session = await ModelSession.load({
    name,
    version: 'new',
    modelPath: file,
    config: parsed,
    ...(labels ? { labels } : {}),
  });
  const spec = session.decodeSpec;
  await session.release();
  const config: ModelConfig = {
    input: {
      width: spec.width,
      height: spec.height,
      resize: spec.resize,
      channels: spec.channels,
      range: spec.range,
      ...(spec.mean ? { mean: spec.mean } : {}),
      ...(spec.std ? { std: spec.std } : {}),
      layout: spec.layout,
      background: spec.background,
    },
    output: parsed.output,
    ...(parsed.labels ? { labels: parsed.labels } : {}),
    topk: parsed.topk,
    ...(parsed.description !== undefined ? { description: parsed.description } : {}),
  };

  const modelDir = path.resolve(options.models ?? DEFAULT_INFERENCE_OPTIONS.models, name);
  await mkdir(modelDir, { recursive: true });
  let version = await nextVersion(modelDir);
  let dir: string;
  // mkdir without `recursive` fails on an existing folder: two writers never share a version.
  for (;;) {
    dir = path.join(modelDir, String(version));
    try {
      await mkdir(dir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      version++;
    }
  }
  try {
    await copyFile(file, path.join(dir, MODEL_FILE), constants.COPYFILE_EXCL);
    await syncFile(path.join(dir, MODEL_FILE));
    if (options.labels !== undefined) {
      await copyFile(options.labels, path.join(dir, LABELS_FILE), constants.COPYFILE_EXCL);
      await syncFile(path.join(dir, LABELS_FILE));
    }
    await writeFileAtomically(path.join(dir, MODEL_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw new ZerveError('INTERNAL', `cannot write version ${version} of ${name} in ${modelDir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return { name, version: String(version), path: dir, config };
}
