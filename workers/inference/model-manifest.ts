/**
 * A version folder's manifest (its files with size and SHA-256) and the manifest's own hash, which
 * names the version's content across the cluster (shared/models.ts).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ModelManifest } from '../../shared/models.ts';

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

/** Reads a complete version folder's manifest: every plain file in it. */
export async function readManifest(dir: string, name: string, version: string): Promise<ModelManifest> {
  const entries = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile() && MANIFEST_FILE_PATTERN.test(e.name));
  const files = [];
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const file = path.join(dir, entry.name);
    const [sha256, bytes] = await Promise.all([sha256File(file), stat(file).then((s) => s.size)]);
    files.push({ name: entry.name, bytes, sha256 });
  }
  return { name, version, files };
}

