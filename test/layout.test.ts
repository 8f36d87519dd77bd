/**
 * The folder rules of docs/architecture.md, read from the import lines: `shared/` imports nothing
 * from `workers/` (what both ends use cannot depend on one end), and neither does the web app (it
 * takes `WorkerConnection` and model exchange from `shared/`). Docs that name a source file name one
 * that exists, so a move that forgets a doc fails here.
 */
import assert from 'node:assert/strict';
import { access, readFile, readdir } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { REPO_ROOT } from './helpers/cluster.ts';
import { readDocs } from './helpers/docs.ts';

/** Every `.ts` file under `folder` (relative to the repository root), recursively. */
async function sourceFiles(folder: string): Promise<string[]> {
  const entries = await readdir(join(REPO_ROOT, folder), { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => relative(REPO_ROOT, join(entry.parentPath, entry.name)))
    .sort();
}

/** Relative module specifiers of a source file: static imports, re-exports and dynamic `import()`. */
function relativeImports(source: string): string[] {
  const pattern = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g;
  return [...source.matchAll(pattern)].map((match) => match[1]!);
}

/** `file:specifier` for each import of a file under `folder` that resolves into `workers/`. */
async function importsFromWorkers(folder: string): Promise<string[]> {
  const workers = join(REPO_ROOT, 'workers');
  const found: string[] = [];
  for (const file of await sourceFiles(folder)) {
    const source = await readFile(join(REPO_ROOT, file), 'utf8');
    for (const specifier of relativeImports(source)) {
      const target = resolve(REPO_ROOT, dirname(file), specifier);
      if (target === workers || target.startsWith(workers + '/')) found.push(`${file}: ${specifier}`);
    }
  }
  return found;
}

describe('source layout', () => {
  it('reads the import lines of shared/ and webapp/', async () => {
    const shared = await sourceFiles('shared');
    assert.ok(shared.includes('shared/worker-connection.ts'), 'shared/worker-connection.ts');
    assert.ok(shared.includes('shared/model-exchange/model-holder.ts'), 'shared/model-exchange/model-holder.ts');
    const holder = await readFile(join(REPO_ROOT, 'shared/model-exchange/model-holder.ts'), 'utf8');
    assert.ok(relativeImports(holder).includes('../worker-connection.ts'));
  });

  it('keeps shared/ free of imports from workers/', async () => {
    assert.deepEqual(await importsFromWorkers('shared'), []);
  });

  it('keeps the web app free of imports from workers/', async () => {
    assert.deepEqual(await importsFromWorkers('webapp'), []);
  });

  it('names only source files that exist in the docs', async () => {
    const missing: string[] = [];
    const folders = '(?:broker|workers|webapp|shared|scripts|test)';
    const pattern = new RegExp(`\\b${folders}/[\\w./-]+\\.ts\\b`, 'g');
    for (const doc of await readDocs()) {
      for (const [path] of doc.text.matchAll(pattern)) {
        await access(join(REPO_ROOT, path)).catch(() => missing.push(`${doc.path}: ${path}`));
      }
    }
    assert.deepEqual(missing, []);
  });
});
