import { readFile, readdir, stat } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { ZerveError } from '../shared/errors.ts';

const IMAGE_TYPES: Readonly<Record<string, string>> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.avif': 'image/avif',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
};

export interface Sample {
  name: string;
  url: string;
  bytes: number;
}

/** The sample images offered on the page: the image files directly inside one folder. */
export class SampleGallery {
  private readonly folder: string | undefined;

  /** @param folder the folder of samples; '' offers none */
  constructor(folder: string) {
    this.folder = folder === '' ? undefined : resolve(folder);
  }

  async list(): Promise<Sample[]> {
    if (!this.folder) return [];
    let names: string[];
    try {
      names = (await readdir(this.folder)).filter((name) => IMAGE_TYPES[extname(name).toLowerCase()] !== undefined);
    } catch {
      return [];
    }
    const samples: Sample[] = [];
    for (const name of names.sort()) {
      const info = await stat(join(this.folder, name)).catch(() => undefined);
      if (info?.isFile()) samples.push({ name, url: `/api/samples/${encodeURIComponent(name)}`, bytes: info.size });
    }
    return samples;
  }

  /** Media type of a sample by its name. */
  typeOf(name: string): string {
    return IMAGE_TYPES[extname(name).toLowerCase()] ?? 'application/octet-stream';
  }

  /**
   * Reads a sample by name; only names `list()` offers are served, so no path ever leaves the folder.
   * @throws ZerveError BAD_REQUEST for an unknown name
   */
  async read(name: string): Promise<Buffer> {
    const samples = await this.list();
    if (!this.folder || !samples.some((s) => s.name === name)) {
      throw new ZerveError('BAD_REQUEST', `no sample image named ${JSON.stringify(name)}`);
    }
    return readFile(join(this.folder, name));
  }
}
