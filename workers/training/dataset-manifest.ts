/**
 * What a stored dataset is: its manifest (classes, counts, every image with its label, split and
 * hash, what was skipped and why), built from an import's files by their folder layout, or checked
 * when it comes from another worker; and the opened dataset the trainer reads.
 */
import { ZerveError } from '../../shared/errors.ts';
import type { ImportSession, PendingImage } from './dataset-readers/import-session.ts';

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


/** Formats sharp reads and the extensions they are stored under. */
export const IMAGE_FORMATS: Record<string, string> = { jpeg: 'jpg', png: 'png', webp: 'webp', gif: 'gif', tiff: 'tiff' };

/** A manifest received from another worker, checked enough to be safe to store and open. */
export function checkManifest(id: string, value: unknown, maxEntries: number): DatasetManifest {
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

export function buildManifest(id: string, source: DatasetManifest['source'], session: ImportSession): DatasetManifest {
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
