/**
 * Labeled image datasets, content-addressed by SHA-256 under `<data>/datasets/<sha256>/`.
 *
 * Import sources: a zip, a tar.gz, or a folder of class folders (`cat/*.jpg`, `dog/*.jpg`, and
 * optionally `test/<class>/*` as an explicit test set; `train/<class>/*` is also understood, and
 * one common top folder such as `pets/cat/...` is stripped). The id of an archive is the SHA-256
 * of its bytes; of a folder, the SHA-256 of its sorted `path NUL sha256` listing. Importing the
 * same bytes twice returns the same id and stores the images once.
 *
 * Entry names are only ever used as labels: images are written as `images/<sha256>.<ext>`, so no
 * entry can write outside the data directory. Decisions, in the manifest or as errors:
 * - `BAD_DATASET`: unknown or corrupt archive, an entry escaping the folder (`../`, absolute
 *   path, backslash), more bytes or entries than the limits (counted while streaming, stopping
 *   early), no usable image, or fewer than two non-empty classes.
 * - listed in `manifest.skipped` with a reason: non-image and corrupt files, symlinks, hidden
 *   files (`.DS_Store`, `__MACOSX/`), files outside a class folder, oversized images, duplicate
 *   images, test images of a class absent from training, and empty classes (a class folder
 *   with no usable image is dropped, not an error, as long as two classes remain).
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import sharp from 'sharp';
import tar from 'tar-stream';
import yauzl from 'yauzl';
import { DEFAULT_TRAINING_OPTIONS, type TrainingOptions } from '../../shared/config.ts';
import { ZerveError } from '../../shared/errors.ts';
import { logger as rootLogger, type Logger } from '../../shared/logger.ts';
import { loadMnist, MNIST_DATASET_ID } from './builtin-mnist.ts';

export type SkipReason =
  | 'not-an-image'
  | 'corrupt-image'
  | 'too-large'
  | 'symlink'
  | 'hidden'
  | 'not-in-class-folder'
  | 'duplicate'
  | 'unknown-test-class'
  | 'empty-class';

export interface SkippedFile {
  path: string;
  reason: SkipReason;
  detail?: string;
}

export type Split = 'train' | 'test';

export interface ManifestImage {
  /** Path inside the archive or folder, as given. */
  path: string;
  label: number;
  split: Split;
  sha256: string;
  /** File inside the dataset directory: `images/<sha256>.<ext>`. */
  file: string;
}

export interface DatasetManifest {
  id: string;
  source: 'zip' | 'tar.gz' | 'folder' | 'builtin';
  createdAt: string;
  classes: string[];
  counts: Record<string, { train: number; test: number }>;
  /** True when the source had a `test/` folder: that split is the test set. */
  explicitTest: boolean;
  images: ManifestImage[];
  skipped: SkippedFile[];
  totalBytes: number;
}

/** An image as stored (encoded bytes) or as built in (raw pixels, e.g. MNIST). */
export type ImageSource =
  | { kind: 'encoded'; bytes: Buffer }
  | { kind: 'raw'; pixels: Uint8Array; width: number; height: number; channels: 1 | 3 };

/** An opened dataset: labels in memory, pixels read on demand. */
export interface Dataset {
  id: string;
  classes: string[];
  labels: Int32Array;
  splits: Split[];
  /** SHA-256 per image (cache key of derived features). */
  hashes: string[];
  explicitTest: boolean;
  read(index: number): Promise<ImageSource>;
}

const IMAGE_FORMATS: Record<string, string> = { jpeg: 'jpg', png: 'png', webp: 'webp', gif: 'gif', tiff: 'tiff' };

interface PendingImage {
  path: string;
  sha256: string;
  file: string;
}

type StoreLimits = Pick<TrainingOptions, 'maxArchiveBytes' | 'maxExpandedBytes' | 'maxEntries' | 'maxImageBytes' | 'maxInputPixels'>;

/** Collects the files of one import into a temporary directory, enforcing the limits. */
class ImportSession {
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

/** A manifest received from another worker, checked enough to be safe to store and open. */
function checkManifest(id: string, value: unknown, maxEntries: number): DatasetManifest {
  const reject = (why: string): never => {
    throw new ZerveError('BAD_DATASET', `fetched manifest of ${id}: ${why}`, { details: { datasetId: id } });
  };
  if (typeof value !== 'object' || value === null) return reject('not an object');
  const m = value as Partial<DatasetManifest>;
  if (m.id !== id) reject(`id ${String(m.id)} is not the one asked for`);
  if (!Array.isArray(m.classes) || m.classes.length < 2 || !m.classes.every((c) => typeof c === 'string')) reject('needs two or more class names');
  if (!Array.isArray(m.images) || m.images.length === 0) return reject('lists no image');
  if (m.images.length > maxEntries) reject(`more than ${maxEntries} images`);
  if (typeof m.explicitTest !== 'boolean') reject('explicitTest is not a boolean');
  const classes = m.classes!.length;
  const extensions = Object.values(IMAGE_FORMATS).join('|');
  const fileName = new RegExp(`^images/[0-9a-f]{64}\\.(${extensions})$`);
  for (const img of m.images) {
    const ok =
      typeof img === 'object' && img !== null && typeof img.path === 'string' && Number.isInteger(img.label) &&
      img.label >= 0 && img.label < classes && (img.split === 'train' || img.split === 'test') &&
      typeof img.sha256 === 'string' && /^[0-9a-f]{64}$/.test(img.sha256) &&
      typeof img.file === 'string' && fileName.test(img.file) && img.file.startsWith(`images/${img.sha256}.`);
    if (!ok) reject(`bad image entry ${JSON.stringify(img).slice(0, 200)}`);
  }
  return m as DatasetManifest;
}

/** Where a file belongs once the layout is known. */
function classify(paths: string[]): { strip: number } {
  // Strip one common top folder (`pets/cat/1.jpg`) when every file sits at depth >= 3 under it.
  if (paths.length === 0) return { strip: 0 };
  const first = paths[0].split('/')[0];
  const common = paths.every((p) => {
    const s = p.split('/');
    return s.length >= 3 && s[0] === first;
  });
  return { strip: common && first !== 'test' && first !== 'train' ? 1 : 0 };
}

/** Content-addressed dataset storage: import, list and open datasets. */
export class DatasetStore {
  readonly #options: TrainingOptions;
  readonly #log: Logger;

  constructor(options: Partial<TrainingOptions> = {}, log: Logger = rootLogger) {
    this.#options = { ...DEFAULT_TRAINING_OPTIONS, ...options };
    for (const key of ['maxArchiveBytes', 'maxExpandedBytes', 'maxEntries', 'maxImageBytes', 'maxInputPixels'] as const) {
      if (!(this.#options[key] > 0)) throw new ZerveError('BAD_REQUEST', `option ${key} must be positive`);
    }
    this.#log = log.child({ component: 'dataset-store' });
  }

  get datasetsDir(): string {
    return join(this.#options.data, 'datasets');
  }

  /** Imports a zip or tar.gz (detected from its first bytes), given as bytes or a file path. */
  async importArchive(source: Buffer | string): Promise<DatasetManifest> {
    let bytes: Buffer;
    if (typeof source === 'string') {
      const info = await stat(source);
      if (info.size > this.#options.maxArchiveBytes) {
        throw new ZerveError('BAD_DATASET', `archive is larger than ${this.#options.maxArchiveBytes} bytes`);
      }
      bytes = await readFile(source);
    } else {
      bytes = source;
    }
    if (bytes.length > this.#options.maxArchiveBytes) {
      throw new ZerveError('BAD_DATASET', `archive is larger than ${this.#options.maxArchiveBytes} bytes`);
    }
    const isZip = bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && (bytes[2] === 3 || bytes[2] === 5);
    const isGzip = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
    if (!isZip && !isGzip) throw new ZerveError('BAD_DATASET', 'not a zip or tar.gz archive');
    const id = createHash('sha256').update(bytes).digest('hex');
    const existing = await this.#readManifest(id);
    if (existing) return existing;
    return this.#runImport(id, isZip ? 'zip' : 'tar.gz', (session) =>
      isZip ? this.#readZip(bytes, session) : this.#readTarGz(bytes, session),
    );
  }

  /** Imports a folder of class folders; symlinks are skipped, never followed. */
  async importFolder(folder: string): Promise<DatasetManifest> {
    const files: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      const entries = await readdir(dir, { withFileTypes: true });
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const entry of entries) {
        const full = join(dir, entry.name);
        if (entry.isDirectory()) await walk(full);
        else files.push(relative(folder, full).split(sep).join('/'));
      }
    };
    try {
      await walk(folder);
    } catch (err) {
      throw new ZerveError('BAD_DATASET', `cannot read folder ${folder}`, { cause: err });
    }
    // The id hashes every file's path and content, so it needs one pass before the import.
    const listing = createHash('sha256');
    for (const path of files) {
      const info = await lstat(join(folder, path));
      let digest = 'symlink';
      if (info.isFile()) {
        const h = createHash('sha256');
        for await (const chunk of createReadStream(join(folder, path))) h.update(chunk as Buffer);
        digest = h.digest('hex');
      }
      listing.update(`${path}\0${digest}\n`);
    }
    const id = listing.digest('hex');
    const existing = await this.#readManifest(id);
    if (existing) return existing;
    return this.#runImport(id, 'folder', async (session) => {
      for (const path of files) {
        session.countEntry();
        if (!session.accepts(path)) continue;
        const info = await lstat(join(folder, path));
        if (info.isSymbolicLink()) session.skip(path, 'symlink');
        else if (!info.isFile()) session.skip(path, 'not-an-image', 'not a regular file');
        else await session.addFile(path, await session.collect(createReadStream(join(folder, path))));
      }
    });
  }

  /** Ids of the stored datasets, plus the built-in `mnist`. */
  async list(): Promise<string[]> {
    let ids: string[] = [];
    try {
      ids = (await readdir(this.datasetsDir)).filter((name) => /^[0-9a-f]{64}$/.test(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return [MNIST_DATASET_ID, ...ids.sort()];
  }

  /** The manifest of a stored dataset; UNKNOWN_DATASET when absent. */
  async manifest(id: string): Promise<DatasetManifest> {
    if (id === MNIST_DATASET_ID) return loadMnist().manifest;
    const manifest = /^[0-9a-f]{64}$/.test(id) ? await this.#readManifest(id) : undefined;
    if (!manifest) throw new ZerveError('UNKNOWN_DATASET', `no dataset ${id}`);
    return manifest;
  }

  /** Opens a dataset for reading (`mnist` is built in). */
  async open(id: string): Promise<Dataset> {
    if (id === MNIST_DATASET_ID) return loadMnist().dataset;
    const manifest = await this.manifest(id);
    const dir = join(this.datasetsDir, id);
    return {
      id,
      classes: manifest.classes,
      labels: Int32Array.from(manifest.images, (img) => img.label),
      splits: manifest.images.map((img) => img.split),
      hashes: manifest.images.map((img) => img.sha256),
      explicitTest: manifest.explicitTest,
      read: async (index) => ({ kind: 'encoded', bytes: await readFile(join(dir, manifest.images[index].file)) }),
    };
  }

  /** Whether dataset `id` is stored here (or built in). */
  async has(id: string): Promise<boolean> {
    if (id === MNIST_DATASET_ID) return true;
    return /^[0-9a-f]{64}$/.test(id) && (await this.#readManifest(id)) !== undefined;
  }

  /**
   * The stored files of `manifest.images[from ..]`, as many as fit in `maxBytes` but at least one:
   * one chunk of a `datasets.fetch.<id>` reply.
   */
  async readImages(manifest: DatasetManifest, from: number, maxBytes: number): Promise<Buffer[]> {
    const dir = join(this.datasetsDir, manifest.id);
    const files: Buffer[] = [];
    let bytes = 0;
    for (let i = from; i < manifest.images.length; i++) {
      const path = join(dir, manifest.images[i].file);
      const size = (await stat(path)).size;
      if (files.length > 0 && bytes + size > maxBytes) break;
      files.push(await readFile(path));
      bytes += size;
    }
    return files;
  }

  /**
   * Stores a dataset fetched from another worker: checks the manifest (id, classes, safe file names),
   * then every image against its entry (SHA-256, name, format, the import limits) as `images` yields
   * them in manifest order, writing into a temporary directory renamed into place only when all
   * match. Anything wrong is BAD_DATASET and nothing is stored. Memory: one image at a time here.
   */
  async importFetched(id: string, manifest: unknown, images: AsyncIterable<Buffer>): Promise<DatasetManifest> {
    const checked = checkManifest(id, manifest, this.#options.maxEntries);
    const existing = await this.#readManifest(id);
    if (existing) return existing;
    return this.#store(id, async (tmpDir) => {
      const session = new ImportSession(tmpDir, this.#options);
      let index = 0;
      for await (const bytes of images) {
        if (index >= checked.images.length) throw new ZerveError('BAD_DATASET', `fetched dataset ${id} has more images than its manifest lists`);
        await session.addVerified(checked.images[index++], bytes);
      }
      if (index < checked.images.length) {
        throw new ZerveError('BAD_DATASET', `fetched dataset ${id} ended after ${index} of ${checked.images.length} images`);
      }
      return checked;
    });
  }

  async #readManifest(id: string): Promise<DatasetManifest | undefined> {
    try {
      return JSON.parse(await readFile(join(this.datasetsDir, id, 'manifest.json'), 'utf8')) as DatasetManifest;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async #runImport(
    id: string,
    source: DatasetManifest['source'],
    read: (session: ImportSession) => Promise<void>,
  ): Promise<DatasetManifest> {
    const started = performance.now();
    const manifest = await this.#store(id, async (tmpDir) => {
      const session = new ImportSession(tmpDir, this.#options);
      await read(session);
      return this.#buildManifest(id, source, session);
    });
    this.#log.info(
      { datasetId: id, images: manifest.images.length, skipped: manifest.skipped.length, ms: Math.round(performance.now() - started) },
      'dataset imported',
    );
    return manifest;
  }

  /** Fills a temporary directory (`images/` made), writes its manifest and renames it into place. */
  async #store(id: string, fill: (tmpDir: string) => Promise<DatasetManifest>): Promise<DatasetManifest> {
    const tmpDir = join(this.#options.data, 'tmp', `import-${randomUUID()}`);
    await mkdir(join(tmpDir, 'images'), { recursive: true });
    try {
      const manifest = await fill(tmpDir);
      await writeFile(join(tmpDir, 'manifest.json'), JSON.stringify(manifest, null, 1));
      await mkdir(this.datasetsDir, { recursive: true });
      try {
        await rename(tmpDir, join(this.datasetsDir, id));
      } catch (err) {
        // A concurrent import or fetch of the same dataset won the rename: keep theirs.
        const existing = await this.#readManifest(id);
        if (!existing) throw err;
        return existing;
      }
      return manifest;
    } finally {
      await rm(tmpDir, { recursive: true, force: true });
    }
  }

  #buildManifest(id: string, source: DatasetManifest['source'], session: ImportSession): DatasetManifest {
    const { strip } = classify(session.images.map((img) => img.path));
    const place = (path: string): { split: Split; className: string } | undefined => {
      const s = path.split('/').slice(strip);
      let split: Split = 'train';
      if ((s[0] === 'test' || s[0] === 'train') && s.length >= 3) {
        split = s[0];
        s.shift();
      }
      return s.length >= 2 ? { split, className: s[0] } : undefined;
    };
    // Class folders seen, including ones left with no usable image.
    const folders = new Set<string>();
    for (const dir of session.directories) {
      const segments = dir.split('/').slice(strip);
      // The split folders themselves (`test/`, `train/`) are not classes.
      if (segments.length === 1 && (segments[0] === 'test' || segments[0] === 'train')) continue;
      const placed = place(`${dir}/x`);
      if (placed && placed.split === 'train') folders.add(placed.className);
    }
    const placedImages: { img: PendingImage; split: Split; className: string }[] = [];
    for (const img of session.images) {
      const placed = place(img.path);
      if (!placed) session.skip(img.path, 'not-in-class-folder');
      else placedImages.push({ img, ...placed });
    }
    const trainCounts = new Map<string, number>();
    for (const p of placedImages) {
      if (p.split === 'train') trainCounts.set(p.className, (trainCounts.get(p.className) ?? 0) + 1);
    }
    const classes = [...trainCounts.keys()].sort();
    for (const folder of [...folders].sort()) {
      if (!trainCounts.has(folder)) session.skip(`${folder}/`, 'empty-class', 'no usable training image');
    }
    if (session.images.length === 0) throw new ZerveError('BAD_DATASET', 'the dataset contains no usable image', { details: { skipped: session.skipped.length } });
    if (classes.length < 2) {
      throw new ZerveError('BAD_DATASET', `a dataset needs at least two non-empty classes, found ${classes.length}`, {
        details: { classes },
      });
    }
    const labelOf = new Map(classes.map((c, i) => [c, i]));
    const counts: DatasetManifest['counts'] = Object.fromEntries(classes.map((c) => [c, { train: 0, test: 0 }]));
    const images: ManifestImage[] = [];
    for (const p of placedImages) {
      const label = labelOf.get(p.className);
      if (label === undefined) {
        session.skip(p.img.path, 'unknown-test-class', `no training images for class ${p.className}`);
        continue;
      }
      counts[p.className][p.split]++;
      images.push({ path: p.img.path, label, split: p.split, sha256: p.img.sha256, file: p.img.file });
    }
    return {
      id,
      source,
      createdAt: new Date().toISOString(),
      classes,
      counts,
      explicitTest: images.some((img) => img.split === 'test'),
      images,
      skipped: session.skipped,
      totalBytes: session.expandedBytes,
    };
  }

  async #readZip(bytes: Buffer, session: ImportSession): Promise<void> {
    let zip: yauzl.ZipFile;
    try {
      zip = await yauzl.fromBufferPromise(bytes, { lazyEntries: true, decodeStrings: false, validateEntrySizes: true });
    } catch (err) {
      throw new ZerveError('BAD_DATASET', 'corrupt zip archive', { cause: err });
    }
    try {
      await new Promise<void>((resolve, reject) => {
        const fail = (err: unknown): void => {
          reject(err instanceof ZerveError ? err : new ZerveError('BAD_DATASET', 'corrupt zip archive', { cause: err }));
        };
        zip.on('error', fail);
        zip.on('end', () => resolve());
        zip.on('entry', (entry: yauzl.Entry) => {
          this.#zipEntry(zip, entry, session).then(() => zip.readEntry(), fail);
        });
        zip.readEntry();
      });
    } finally {
      zip.close();
    }
  }

  async #zipEntry(zip: yauzl.ZipFile, entry: yauzl.Entry, session: ImportSession): Promise<void> {
    const rawName = Buffer.isBuffer(entry.fileName) ? entry.fileName.toString('utf8') : String(entry.fileName);
    const name = session.checkName(rawName);
    session.countEntry();
    if (rawName.endsWith('/')) {
      if (name !== '') session.accepts(`${name}/x`);
      return;
    }
    if (!session.accepts(name)) return;
    const mode = (entry.externalFileAttributes >>> 16) & 0o170000;
    if (mode === 0o120000) {
      session.skip(name, 'symlink');
      return;
    }
    // Stop before reading when the declared sizes alone exceed the limit; actual bytes are counted too.
    session.checkDeclared(entry.uncompressedSize);
    const stream = await new Promise<Readable>((resolve, reject) => {
      zip.openReadStream(entry, (err, s) => (err ? reject(err) : resolve(s)));
    });
    await session.addFile(name, await session.collect(stream));
  }

  async #readTarGz(bytes: Buffer, session: ImportSession): Promise<void> {
    const extract = tar.extract();
    const gunzip = createGunzip();
    const done = (async () => {
      for await (const entry of extract) {
        const name = session.checkName(entry.header.name);
        session.countEntry();
        const type = entry.header.type;
        if (type === 'directory') {
          if (name !== '') session.accepts(`${name}/x`);
          entry.resume();
          continue;
        }
        if (!session.accepts(name)) {
          entry.resume();
          continue;
        }
        if (type === 'symlink' || type === 'link') {
          session.skip(name, 'symlink', entry.header.linkname ?? undefined);
          entry.resume();
          continue;
        }
        if (type !== 'file' && type !== 'contiguous-file') {
          session.skip(name, 'not-an-image', `tar entry of type ${type}`);
          entry.resume();
          continue;
        }
        await session.addFile(name, await session.collect(entry as unknown as Readable));
      }
    })();
    const fail = (err: unknown): void => {
      extract.destroy(err as Error);
    };
    gunzip.on('error', fail);
    gunzip.pipe(extract);
    gunzip.end(bytes);
    try {
      await done;
    } catch (err) {
      gunzip.destroy();
      if (err instanceof ZerveError) throw err;
      throw new ZerveError('BAD_DATASET', 'corrupt tar.gz archive', { cause: err });
    }
  }
}
