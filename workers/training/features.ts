/**
 * Turns a dataset into a feature matrix (one row per image, in dataset order):
 * - `pixels`: resized greyscale or RGB pixels scaled 0..1, laid out CHW (the exported model's
 *   input is float32 [N, C, H, W], flattened by its first node);
 * - `embedding`: the output of an ONNX backbone's inner tensor (see `backbone.ts`), cached on
 *   disk per backbone hash + image hash under `<data>/features/<key>/<sha256>.f32`.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { DEFAULT_TRAINING_OPTIONS, type TrainingOptions } from '../../shared/config.ts';
import { ZerveError } from '../../shared/errors.ts';
import { logger as rootLogger, type Logger } from '../../shared/logger.ts';
import { float32ToFloat16 } from '../../shared/float16.ts';
import { backboneInputType, buildEmbeddingModel, EMBEDDING_OUTPUT, preprocessForBackbone, type BackboneInputType, type BackboneSpec } from './backbone.ts';
import type { Dataset, ImageSource } from './dataset-store.ts';
import { encodeModel } from './onnx-proto.ts';

export interface PixelFeatures {
  kind: 'pixels';
  width: number;
  height: number;
  channels: 1 | 3;
}

export interface EmbeddingFeatures {
  kind: 'embedding';
  backbone: BackboneSpec;
}

export type FeatureSpec = PixelFeatures | EmbeddingFeatures;

export interface FeatureMatrix {
  /** Row-major [rows, cols]. */
  data: Float32Array;
  rows: number;
  cols: number;
  /** Images processed per second (decode + resize, and inference for embeddings), cache hits excluded. */
  imagesPerSecond: number;
  /** Rows served from the embedding cache. */
  cacheHits: number;
}

export interface FeatureRunOptions {
  signal?: AbortSignal;
  /** Called after each batch with rows done so far. */
  onProgress?: (done: number, total: number) => void;
  logger?: Logger;
}

const PIXEL_CONCURRENCY = 4;

interface BackboneSession {
  session: ort.InferenceSession;
  key: string;
  inputType: BackboneInputType;
}

async function pixelsOf(source: ImageSource, spec: PixelFeatures, maxInputPixels: number): Promise<Float32Array> {
  const area = spec.width * spec.height;
  const out = new Float32Array(spec.channels * area);
  if (source.kind === 'raw' && source.width === spec.width && source.height === spec.height && source.channels === spec.channels) {
    // Fast path (MNIST at its own size): already CHW for one channel.
    for (let i = 0; i < out.length; i++) out[i] = source.pixels[i] / 255;
    return out;
  }
  let image =
    source.kind === 'encoded'
      ? sharp(source.bytes, { limitInputPixels: maxInputPixels })
      : sharp(source.pixels, { raw: { width: source.width, height: source.height, channels: source.channels } });
  // Same steps as the inference engine's decoder (workers/inference/image-decoder.ts), so the
  // exported model sees at serving time what it saw in training.
  image = image
    .rotate()
    .flatten({ background: spec.channels === 1 ? '#000000' : '#ffffff' })
    .resize(spec.width, spec.height, { fit: 'fill' });
  image = spec.channels === 1 ? image.toColourspace('b-w') : image.toColourspace('srgb');
  const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== spec.channels) throw new ZerveError('BAD_IMAGE', `expected ${spec.channels} channels, got ${info.channels}`);
  for (let c = 0; c < spec.channels; c++) {
    for (let i = 0; i < area; i++) out[c * area + i] = data[i * spec.channels + c] / 255;
  }
  return out;
}

/** Runs `fn` over indices with at most `limit` in flight, in order of completion. */
async function forEachLimited(count: number, limit: number, fn: (i: number) => Promise<void>, signal?: AbortSignal): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, count) }, async () => {
    while (next < count) {
      if (signal?.aborted) throw new ZerveError('CANCELED', 'feature extraction canceled');
      const i = next++;
      await fn(i);
    }
  });
  await Promise.all(lanes);
}

/** Computes features for the given dataset rows (default: every image). */
export class FeatureExtractor {
  readonly #options: TrainingOptions;
  readonly #sessions = new Map<string, Promise<BackboneSession>>();

  constructor(options: Partial<TrainingOptions> = {}) {
    this.#options = { ...DEFAULT_TRAINING_OPTIONS, ...options };
    if (!(this.#options.embeddingBatchSize >= 1)) throw new ZerveError('BAD_CONFIG', 'embeddingBatchSize must be >= 1');
  }

  /** Cache key of a backbone: hash of the model bytes and the embedding/preprocessing spec. */
  static async backboneKey(spec: BackboneSpec): Promise<string> {
    const bytes = await readFile(spec.modelPath);
    const { modelPath: _path, name: _name, ...rest } = spec;
    return createHash('sha256').update(bytes).update(JSON.stringify(rest)).digest('hex').slice(0, 32);
  }

  async extract(dataset: Dataset, spec: FeatureSpec, run: FeatureRunOptions = {}, rows?: number[]): Promise<FeatureMatrix> {
    const indices = rows ?? Array.from({ length: dataset.labels.length }, (_, i) => i);
    const log = (run.logger ?? rootLogger).child({ component: 'features', datasetId: dataset.id, kind: spec.kind });
    const result = spec.kind === 'pixels' ? await this.#pixels(dataset, spec, indices, run) : await this.#embeddings(dataset, spec, indices, run);
    log.info({ rows: result.rows, cols: result.cols, imagesPerSecond: Math.round(result.imagesPerSecond), cacheHits: result.cacheHits }, 'features ready');
    return result;
  }

  /** Releases the backbone sessions. */
  async close(): Promise<void> {
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.allSettled(sessions.map(async (s) => (await s).session.release()));
  }

  async #pixels(dataset: Dataset, spec: PixelFeatures, indices: number[], run: FeatureRunOptions): Promise<FeatureMatrix> {
    const cols = spec.channels * spec.width * spec.height;
    const data = new Float32Array(indices.length * cols);
    const started = performance.now();
    let done = 0;
    await forEachLimited(indices.length, PIXEL_CONCURRENCY, async (r) => {
      data.set(await pixelsOf(await dataset.read(indices[r]), spec, this.#options.maxInputPixels), r * cols);
      if (++done % 256 === 0) {
        run.onProgress?.(done, indices.length);
        // Built-in digits take the synchronous fast path: without this the whole dataset runs as one
        // chain of microtasks and heartbeats wait for it.
        await yieldToLoop();
      }
    }, run.signal);
    run.onProgress?.(indices.length, indices.length);
    const seconds = (performance.now() - started) / 1000;
    return { data, rows: indices.length, cols, imagesPerSecond: indices.length / Math.max(seconds, 1e-6), cacheHits: 0 };
  }

  #session(spec: BackboneSpec): Promise<BackboneSession> {
    const id = `${spec.modelPath}|${spec.featureTensor}|${spec.pool}`;
    let entry = this.#sessions.get(id);
    if (!entry) {
      entry = (async () => {
        const bytes = await readFile(spec.modelPath);
        const embedding = buildEmbeddingModel(bytes, spec);
        const session = await ort.InferenceSession.create(encodeModel(embedding), {
          intraOpNumThreads: this.#options.threads,
          interOpNumThreads: 1,
          graphOptimizationLevel: 'all',
        }).catch((err: unknown) => {
          // The user named this model as a backbone: say which, not "internal error".
          throw new ZerveError('BAD_REQUEST', `backbone ${spec.name} cannot be used for embeddings: ${(err as Error).message}`, { cause: err });
        });
        return { session, key: await FeatureExtractor.backboneKey(spec), inputType: backboneInputType(embedding, spec) };
      })();
      this.#sessions.set(id, entry);
      entry.catch(() => this.#sessions.delete(id));
    }
    return entry;
  }

  async #embeddings(dataset: Dataset, spec: EmbeddingFeatures, indices: number[], run: FeatureRunOptions): Promise<FeatureMatrix> {
    const backbone = spec.backbone;
    const { session, key, inputType } = await this.#session(backbone);
    const cacheDir = join(this.#options.data, 'features', key);
    await mkdir(cacheDir, { recursive: true });
    const rowsOut: (Float32Array | undefined)[] = new Array(indices.length);
    const missing: number[] = [];
    await forEachLimited(indices.length, 8, async (r) => {
      try {
        const buf = await readFile(join(cacheDir, `${dataset.hashes[indices[r]]}.f32`));
        rowsOut[r] = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4).slice();
      } catch {
        missing.push(r);
      }
    }, run.signal);
    missing.sort((a, b) => a - b);
    const cacheHits = indices.length - missing.length;
    const started = performance.now();
    const batchSize = this.#options.embeddingBatchSize;
    const planeSize = 3 * backbone.width * backbone.height;
    const prepare = async (start: number): Promise<Float32Array> => {
      const batch = missing.slice(start, start + batchSize);
      const input = new Float32Array(batch.length * planeSize);
      await Promise.all(batch.map(async (r, j) => {
        input.set(await preprocessForBackbone(await dataset.read(indices[r]), backbone, this.#options.maxInputPixels), j * planeSize);
      }));
      return input;
    };
    // Decoding the next batch overlaps with inference of the current one.
    let pending = missing.length > 0 ? prepare(0) : undefined;
    for (let start = 0; start < missing.length; start += batchSize) {
      if (run.signal?.aborted) throw new ZerveError('CANCELED', 'feature extraction canceled');
      const input = await (pending as Promise<Float32Array>);
      const count = input.length / planeSize;
      pending = start + batchSize < missing.length ? prepare(start + batchSize) : undefined;
      const dims = [count, 3, backbone.height, backbone.width];
      const tensor = inputType === 'float16' ? new ort.Tensor('float16', float32ToFloat16(input), dims) : new ort.Tensor('float32', input, dims);
      const output = (
        await session.run({ [backbone.inputName]: tensor }).catch((err: unknown) => {
          throw new ZerveError('BAD_REQUEST', `backbone ${backbone.name} failed on a batch of this dataset: ${(err as Error).message}`, { cause: err });
        })
      )[EMBEDDING_OUTPUT];
      const values = output.data as Float32Array;
      const dim = values.length / count;
      await Promise.all(Array.from({ length: count }, async (_, j) => {
        const r = missing[start + j];
        const row = values.slice(j * dim, (j + 1) * dim);
        rowsOut[r] = row;
        // Write-then-rename so a concurrent reader never sees half a file.
        const file = join(cacheDir, `${dataset.hashes[indices[r]]}.f32`);
        const tmp = `${file}.${process.pid}.${r}.tmp`;
        await writeFile(tmp, new Uint8Array(row.buffer, row.byteOffset, row.byteLength));
        await rename(tmp, file);
      }));
      run.onProgress?.(cacheHits + Math.min(start + batchSize, missing.length), indices.length);
    }
    const seconds = (performance.now() - started) / 1000;
    const cols = rowsOut[0]?.length ?? 0;
    const data = new Float32Array(indices.length * cols);
    for (let r = 0; r < indices.length; r++) {
      const row = rowsOut[r] as Float32Array;
      if (row.length !== cols) throw new ZerveError('INTERNAL', 'embedding cache entry has the wrong size');
      data.set(row, r * cols);
    }
    return {
      data,
      rows: indices.length,
      cols,
      imagesPerSecond: missing.length === 0 ? 0 : missing.length / Math.max(seconds, 1e-6),
      cacheHits,
    };
  }
}
