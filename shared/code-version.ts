import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

let codeVersionCache: { codeVersion: string; gitCommit: string | null } | undefined;

/** Package version and, when the code is a git checkout, its commit. */
export function codeVersion(): { codeVersion: string; gitCommit: string | null } {
  if (codeVersionCache) return codeVersionCache;
  const root = fileURLToPath(new URL('../', import.meta.url));
  let version = 'unknown';
  try {
    version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    // no package.json beside the code: keep 'unknown'
  }
  let commit: string | null = null;
  try {
    commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).toString().trim() || null;
  } catch {
    // not a checkout, or no git
  }
  codeVersionCache = { codeVersion: version, gitCommit: commit };
  return codeVersionCache;
}
