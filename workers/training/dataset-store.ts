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
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_TRAINING_OPTIONS, type TrainingOptions } from '../../shared/config.ts';
import { ZerveError } from '../../shared/errors.ts';
import { logger as rootLogger, type Logger } from '../../shared/logger.ts';
import { loadMnist, MNIST_DATASET_ID } from './builtin-mnist.ts';
import { buildManifest, checkManifest, type Dataset, type DatasetManifest } from './dataset-manifest.ts';
import { folderListing, readFolder } from './dataset-readers/folder.ts';
import { ImportSession } from './dataset-readers/import-session.ts';
import { readTarGz } from './dataset-readers/tar-gz.ts';
import { readZip } from './dataset-readers/zip.ts';

// The manifest's types, for the store's users.
export type { Dataset, DatasetManifest, ImageSource, ManifestImage, SkippedFile, SkipReason, Split } from './dataset-manifest.ts';

/** Content-addressed dataset storage: import, list and open datasets. */
export class DatasetStore {
  readonly #options: TrainingOptions;
  readonly #log: Logger;

  constructor(options: Partial<TrainingOptions> = {}, log: Logger = rootLogger) {
    this.#options = { ...DEFAULT_TRAINING_OPTIONS, ...options };
    for (const key of ['maxArchiveBytes', 'maxExpandedBytes', 'maxEntries', 'maxImageBytes', 'maxInputPixels'] as const) {
      if (!(this.#options[key] > 0)) throw new ZerveError('BAD_CONFIG', `option ${key} must be positive`);
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
      isZip ? readZip(bytes, session) : readTarGz(bytes, session),
    );
  }

  /** Imports a folder of class folders; symlinks are skipped, never followed. */
  async importFolder(folder: string): Promise<DatasetManifest> {
    const { files, id } = await folderListing(folder);
    const existing = await this.#readManifest(id);
    if (existing) return existing;
    return this.#runImport(id, 'folder', (session) => readFolder(folder, files, session));
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
      return buildManifest(id, source, session);
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
}
