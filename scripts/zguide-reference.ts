/**
 * The ZeroMQ Guide's reference Majordomo implementation in `../shared/reference/zguide-mdp` (C with
 * czmq, and Python): found, and its C programs built with its own `build.sh` into a folder under the
 * system temp dir keyed by a hash of its sources, so the benchmark and the tests reuse one build.
 * Nothing is installed: without gcc or Debian's libczmq-dev the build is reported missing.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** `../shared/reference/zguide-mdp` beside the repository (read only). */
export const ZGUIDE_DIR = path.resolve(fileURLToPath(new URL('../', import.meta.url)), '..', 'shared', 'reference', 'zguide-mdp');
/** The Guide's Python broker, worker and clients (they need Debian's python3-zmq). */
export const ZGUIDE_PYTHON_DIR = path.join(ZGUIDE_DIR, 'python');
/** Debian's Python, which has python3-zmq (the `python3` on PATH may be a shim without it). */
export const DEBIAN_PYTHON = '/usr/bin/python3';

export const ZGUIDE_PROGRAMS = ['mdbroker', 'mdworker', 'mdclient', 'mdclient2'] as const;
export type ZguideProgram = (typeof ZGUIDE_PROGRAMS)[number];

export type ZguideBuild = { dir: string; path(program: ZguideProgram): string } | { missing: string };

const run = promisify(execFile);

/** Why the C programs cannot be built here, or undefined when they can. */
function missingToolchain(): string | undefined {
  if (!existsSync(path.join(ZGUIDE_DIR, 'build.sh'))) return `${ZGUIDE_DIR}/build.sh not found`;
  if (!existsSync('/usr/include/czmq.h')) return 'libczmq is not installed (apt-get install -y libczmq-dev)';
  return undefined;
}

/**
 * Builds the C broker, worker and clients (about a second), or reuses an earlier build of the same
 * sources. Resolves `{ missing }` when the toolchain or libczmq is absent; rejects when a build fails.
 */
export async function buildZguideReference(): Promise<ZguideBuild> {
  const missing = missingToolchain();
  if (missing) return { missing };
  const hash = createHash('sha256');
  for (const name of (await readdir(ZGUIDE_DIR)).filter((n) => /\.(c|h|sh)$/.test(n)).sort()) {
    hash.update(name).update(await readFile(path.join(ZGUIDE_DIR, name)));
  }
  const dir = path.join(tmpdir(), `zerve-zguide-${hash.digest('hex').slice(0, 12)}`);
  const build = { dir, path: (program: ZguideProgram) => path.join(dir, program) };
  if (ZGUIDE_PROGRAMS.every((p) => existsSync(build.path(p)))) return build;
  // Built beside and renamed into place, so a concurrent run never sees half a build.
  const staging = await mkdtemp(`${dir}-building-`);
  try {
    await run('bash', [path.join(ZGUIDE_DIR, 'build.sh'), staging], { timeout: 120_000 });
    await rename(staging, dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err; // another run finished first
    });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr;
    throw new Error(`building the Guide's reference failed${stderr ? `: ${stderr.trim().slice(-2000)}` : ''}`, { cause: err });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return build;
}
