/**
 * The files of one import, collected into a temporary directory while the limits are enforced:
 * entry names checked (none may escape the folder), entries and bytes counted as they stream,
 * every file checked to be an image and written once under its SHA-256. Every reader
 * (zip, tar.gz, folder) feeds one of these.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import sharp from 'sharp';
import type { TrainingOptions } from '../../../shared/config.ts';
import { ZerveError } from '../../../shared/errors.ts';
import { IMAGE_FORMATS, type ManifestImage, type SkippedFile, type SkipReason } from '../dataset-manifest.ts';

export interface PendingImage {
  path: string;
  sha256: string;
  file: string;
}

export type StoreLimits = Pick<TrainingOptions, 'maxArchiveBytes' | 'maxExpandedBytes' | 'maxEntries' | 'maxImageBytes' | 'maxInputPixels'>;

/** Collects the files of one import into a temporary directory, enforcing the limits. */
export class ImportSession {
  readonly images: PendingImage[] = [];
  readonly skipped: SkippedFile[] = [];
  readonly directories = new Set<string>();
  readonly #seen = new Map<string, string>();
  readonly #limits: StoreLimits;
  readonly tmpDir: string;
  expandedBytes = 0;
  entries = 0;

  constructor(tmpDir: string, limits: StoreLimits) {
    this.tmpDir = tmpDir;
    this.#limits = limits;
  }

  /** Validates an entry name; throws BAD_DATASET when it would escape the folder. */
  checkName(name: string): string {
    const bad =
      name.includes('\\') || name.includes('\0') || name.startsWith('/') || /^[a-zA-Z]:/.test(name) ||
      name.split('/').includes('..');
    if (bad) {
      throw new ZerveError('BAD_DATASET', `archive entry escapes the dataset folder: ${name}`, {
        details: { entry: name },
      });
    }
    return name.split('/').filter((s) => s !== '' && s !== '.').join('/');
  }

  countEntry(): void {
    this.entries++;
    if (this.entries > this.#limits.maxEntries) {
      throw new ZerveError('BAD_DATASET', `dataset has more than ${this.#limits.maxEntries} entries`, {
        details: { limit: this.#limits.maxEntries },
      });
    }
  }

  countBytes(n: number): void {
    this.expandedBytes += n;
    if (this.expandedBytes > this.#limits.maxExpandedBytes) {
      throw new ZerveError('BAD_DATASET', `dataset expands past ${this.#limits.maxExpandedBytes} bytes`, {
        details: { limit: this.#limits.maxExpandedBytes },
      });
    }
  }

  /** Fails early when a size declared by the archive would already pass the limit. */
  checkDeclared(n: number): void {
    if (this.expandedBytes + n > this.#limits.maxExpandedBytes) {
      throw new ZerveError('BAD_DATASET', `dataset expands past ${this.#limits.maxExpandedBytes} bytes`, {
        details: { limit: this.#limits.maxExpandedBytes },
      });
    }
  }

  /** Reads one file's stream, counting bytes; returns null (and drains) when the file is too large. */
  async collect(stream: Readable): Promise<Buffer | null> {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        this.countBytes(chunk.length);
        size += chunk.length;
        if (size > this.#limits.maxImageBytes) tooLarge = true;
        if (!tooLarge) chunks.push(chunk);
      }
    } catch (err) {
      stream.destroy();
      throw err;
    }
    return tooLarge ? null : Buffer.concat(chunks);
  }

  /** Whether a path is worth reading; records the skip reason when not. */
  accepts(path: string): boolean {
    const segments = path.split('/');
    if (segments.some((s) => s.startsWith('.') || s === '__MACOSX')) {
      this.skipped.push({ path, reason: 'hidden' });
      return false;
    }
    for (let i = 1; i < segments.length; i++) this.directories.add(segments.slice(0, i).join('/'));
    return true;
  }

  skip(path: string, reason: SkipReason, detail?: string): void {
    this.skipped.push(detail === undefined ? { path, reason } : { path, reason, detail });
  }

  /** Verifies the bytes are an image and writes them once, named by hash. */
  async addFile(path: string, bytes: Buffer | null): Promise<void> {
    if (bytes === null) {
      this.skip(path, 'too-large', `over ${this.#limits.maxImageBytes} bytes`);
      return;
    }
    let format: string | undefined;
    try {
      const meta = await sharp(bytes, { limitInputPixels: this.#limits.maxInputPixels }).metadata();
      format = meta.format;
      if (!meta.width || !meta.height) throw new Error('no dimensions');
      if (meta.width * meta.height > this.#limits.maxInputPixels) {
        this.skip(path, 'too-large', `${meta.width}x${meta.height} pixels`);
        return;
      }
    } catch (err) {
      const looksLikeImage = /\.(jpe?g|png|webp|gif|tiff?)$/i.test(path);
      this.skip(path, looksLikeImage ? 'corrupt-image' : 'not-an-image', (err as Error).message);
      return;
    }
    const ext = format === undefined ? undefined : IMAGE_FORMATS[format];
    if (ext === undefined) {
      this.skip(path, 'not-an-image', `unsupported format ${String(format)}`);
      return;
    }
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const earlier = this.#seen.get(sha256);
    if (earlier !== undefined) {
      this.skip(path, 'duplicate', `same bytes as ${earlier}`);
      return;
    }
    this.#seen.set(sha256, path);
    const file = `images/${sha256}.${ext}`;
    await writeFile(join(this.tmpDir, file), bytes);
    this.images.push({ path, sha256, file });
  }

  /**
   * Writes an image received from another worker after checking it against its manifest entry:
   * size and pixel limits, SHA-256, and a file name `images/<sha256>.<ext>` matching its format.
   * Any mismatch is BAD_DATASET (a fetched dataset is all or nothing, never partly skipped).
   */
  async addVerified(entry: ManifestImage, bytes: Buffer): Promise<void> {
    const reject = (why: string): never => {
      throw new ZerveError('BAD_DATASET', `fetched image ${entry.path}: ${why}`, { details: { path: entry.path, sha256: entry.sha256 } });
    };
    this.countEntry();
    this.countBytes(bytes.length);
    if (bytes.length > this.#limits.maxImageBytes) reject(`over ${this.#limits.maxImageBytes} bytes`);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== entry.sha256) reject(`SHA-256 ${sha256} differs from the manifest`);
    if (this.#seen.has(sha256)) reject('listed twice');
    let format: string | undefined;
    try {
      const meta = await sharp(bytes, { limitInputPixels: this.#limits.maxInputPixels }).metadata();
      if (!meta.width || !meta.height) throw new Error('no dimensions');
      format = meta.format;
    } catch (err) {
      reject(`not a readable image (${(err as Error).message})`);
    }
    const ext = format === undefined ? undefined : IMAGE_FORMATS[format];
    if (ext === undefined || entry.file !== `images/${sha256}.${ext}`) reject(`file name ${entry.file} does not match its bytes`);
    this.#seen.set(sha256, entry.path);
    await writeFile(join(this.tmpDir, entry.file), bytes);
  }
}

