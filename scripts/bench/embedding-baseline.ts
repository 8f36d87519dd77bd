import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { buildEmbeddingModel, EMBEDDING_OUTPUT, type BackboneSpec } from '../../workers/training/backbone.ts';
import { encodeModel } from '../../workers/training/onnx-proto.ts';

export interface EmbeddingBaselineOptions {
  backbone: BackboneSpec;
  /** onnxruntime intra-op threads, as the training worker's `threads`. */
  threads: number;
}

/**
 * The transfer benchmark's baseline: the least one Node process can do to turn encoded images into
 * backbone embeddings. The same embedding graph and session options as the trainer's feature
 * extractor (so only the work around the session differs), fed by a plain loop: sharp decodes a
 * batch (stretched to the backbone's size, alpha dropped), a loop packs it as a float NCHW tensor,
 * onnxruntime runs it. The caller overlaps decoding the next batch with running this one, as the
 * extractor does; there is no dataset, no hashing and no cache.
 */
export class EmbeddingBaseline {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly backbone: BackboneSpec,
  ) {}

  static async load(options: EmbeddingBaselineOptions): Promise<EmbeddingBaseline> {
    const model = encodeModel(buildEmbeddingModel(await readFile(options.backbone.modelPath), options.backbone));
    const session = await ort.InferenceSession.create(model, { intraOpNumThreads: options.threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
    return new EmbeddingBaseline(session, options.backbone);
  }

  /** `images` (encoded bytes) as one float NCHW batch, ready for `run`. */
  async decode(images: Buffer[]): Promise<Float32Array> {
    const { width, height, channelOrder, scale } = this.backbone;
    const area = width * height;
    const input = new Float32Array(images.length * 3 * area);
    const factor = scale === 255 ? 1 : 1 / 255;
    const decoded = await Promise.all(images.map((bytes) => sharp(bytes).resize(width, height, { fit: 'fill' }).removeAlpha().raw().toBuffer()));
    for (const [n, pixels] of decoded.entries()) {
      for (let c = 0; c < 3; c++) {
        const src = channelOrder === 'bgr' ? 2 - c : c;
        const mean = this.backbone.mean?.[c] ?? 0;
        const std = this.backbone.std?.[c] ?? 1;
        const base = (n * 3 + c) * area;
        for (let i = 0; i < area; i++) input[base + i] = (pixels[i * 3 + src]! * factor - mean) / std;
      }
    }
    return input;
  }

  /** Embeddings of a `decode`d batch of `count` images: row-major [count, D]. */
  async run(input: Float32Array, count: number): Promise<{ data: Float32Array; dim: number }> {
    const { width, height } = this.backbone;
    const tensor = new ort.Tensor('float32', input, [count, 3, height, width]);
    const data = (await this.session.run({ [this.backbone.inputName]: tensor }))[EMBEDDING_OUTPUT]!.data as Float32Array;
    return { data, dim: data.length / count };
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
