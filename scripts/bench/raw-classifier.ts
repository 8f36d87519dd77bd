import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { argmax } from '../../shared/argmax.ts';

export interface RawClassifierOptions {
  /** Path of a float32 NCHW image model (the fixtures' `squeezenet-fp32`). */
  modelPath: string;
  /** onnxruntime intra-op threads. @defaultValue 2 */
  threads?: number;
  /** Tensor side in pixels. @defaultValue 224 */
  size?: number;
  /**
   * Whether onnxruntime's intra-op threads spin while waiting for work (its default). Spinning
   * threads take CPU that other processes on the same cores need. @defaultValue true
   */
  allowSpinning?: boolean;
}

/**
 * The benchmark's baseline: the least work a single Node process can do to classify an image with
 * squeezenet, so the limit the cluster is held against. sharp decodes and resizes (cover, as the
 * cluster's config does) into BGR bytes, a loop makes the 0..255 NCHW float tensor, onnxruntime runs
 * it. No validation, no EXIF rotation, no alpha flattening, no top-k: every cost the cluster adds is
 * counted against the cluster.
 */
export class RawClassifier {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly inputName: string,
    private readonly outputName: string,
    private readonly size: number,
  ) {}

  static async load(options: RawClassifierOptions): Promise<RawClassifier> {
    const session = await ort.InferenceSession.create(options.modelPath, {
      intraOpNumThreads: options.threads ?? 2,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      extra: { session: { intra_op: { allow_spinning: options.allowSpinning === false ? '0' : '1' } } },
    });
    const classifier = new RawClassifier(session, session.inputNames[0]!, session.outputNames[0]!, options.size ?? 224);
    await classifier.run(new Float32Array(3 * classifier.size * classifier.size)); // warm-up: the first run allocates
    return classifier;
  }

  /** Decodes, resizes and runs one encoded image; resolves with the top-1 class index. */
  async classify(image: Buffer): Promise<number> {
    return argmax(await this.run(await this.decode(image)));
  }

  /** Encoded image bytes to a BGR 0..255 NCHW float tensor. */
  async decode(image: Buffer): Promise<Float32Array> {
    const side = this.size;
    const pixels = await sharp(image).resize(side, side, { fit: 'cover' }).removeAlpha().raw().toBuffer();
    const plane = side * side;
    const tensor = new Float32Array(plane * 3);
    // One pass writing the three planes, as the worker's decoder does (faster than a pass per plane).
    for (let i = 0, p = 0; i < plane; i++, p += 3) {
      tensor[i] = pixels[p + 2]!;
      tensor[plane + i] = pixels[p + 1]!;
      tensor[2 * plane + i] = pixels[p]!;
    }
    return tensor;
  }

  async run(tensor: Float32Array): Promise<Float32Array> {
    const feed = new ort.Tensor('float32', tensor, [1, 3, this.size, this.size]);
    const results = await this.session.run({ [this.inputName]: feed }, [this.outputName]);
    return results[this.outputName]!.data as Float32Array;
  }

  /** Runs `tensors` as one batch (the model's batch dimension must be dynamic); resolves with the top-1 class of each. */
  async runBatch(tensors: Float32Array[]): Promise<number[]> {
    const size = 3 * this.size * this.size;
    const batch = new Float32Array(size * tensors.length);
    tensors.forEach((t, i) => batch.set(t, i * size));
    const feed = new ort.Tensor('float32', batch, [tensors.length, 3, this.size, this.size]);
    const scores = (await this.session.run({ [this.inputName]: feed }, [this.outputName]))[this.outputName]!.data as Float32Array;
    const classes = scores.length / tensors.length;
    return tensors.map((_, i) => argmax(scores.subarray(i * classes, (i + 1) * classes)));
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
