import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from './cluster.ts';

/** One documentation file: its path from the repository root and its text. */
export interface DocFile {
  path: string;
  text: string;
}

/** README.md and every Markdown file in docs/, whichever files exist when the test runs. */
export async function readDocs(): Promise<DocFile[]> {
  const docs = (await readdir(join(REPO_ROOT, 'docs'))).filter((name) => name.endsWith('.md')).sort();
  const paths = ['README.md', ...docs.map((name) => `docs/${name}`)];
  return Promise.all(paths.map(async (path) => ({ path, text: await readFile(join(REPO_ROOT, path), 'utf8') })));
}

/** The section of the first doc file with a heading (of any level) reading `title`, up to the next heading of that level or higher. */
export function docSection(docs: readonly DocFile[], title: string): string | undefined {
  for (const { text } of docs) {
    const lines = text.split('\n');
    const at = lines.findIndex((line) => /^#+ /.test(line) && line.replace(/^#+ /, '').trim() === title);
    if (at < 0) continue;
    const level = /^#+/.exec(lines[at]!)![0].length;
    const end = lines.findIndex((line, i) => i > at && /^#+ /.test(line) && /^#+/.exec(line)![0].length <= level);
    return lines.slice(at + 1, end < 0 ? undefined : end).join('\n');
  }
  return undefined;
}
