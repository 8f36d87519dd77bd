/**
 * A version folder's manifest (its files with size and SHA-256) and the manifest's own hash, which
 * names the version's content across the cluster (shared/models.ts).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ModelManifest } from '../models.ts';

/** File names a manifest may carry: plain names in the version folder, never hidden, never a path. */
export const MANIFEST_FILE_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/** SHA-256 of a file, streamed. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Hash of a manifest: SHA-256 of its canonical JSON (fixed key order, files by name). */
export function manifestHash(manifest: ModelManifest): string {
  const files = [...manifest.files].sort((a, b) => (a.name < b.name ? -1 : 1)).map((f) => ({ name: f.name, bytes: f.bytes, sha256: f.sha256 }));
  return createHash('sha256').update(JSON.stringify({ name: manifest.name, version: manifest.version, files })).digest('hex');
}

/** Reads a complete version folder's manifest: every plain file in it (a symbolic link counts as the file it points to). */
export async function readManifest(dir: string, name: string, version: string): Promise<ModelManifest> {
  const files = [];
  for (const entry of (await readdir(dir)).filter((n) => MANIFEST_FILE_PATTERN.test(n)).sort()) {
    const file = path.join(dir, entry);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) continue;
    files.push({ name: entry, bytes: info.size, sha256: await sha256File(file) });
  }
  return { name, version, files };
}

