/**
 * Documentation that drifts from the code fails here, as the error catalog test does for error codes:
 * every `zerve` flag the docs name exists in that command's `--help`, every ZERVE_* variable exists,
 * every option of shared/config.ts is documented, and no doc hand-writes the test count. It reads
 * README.md and every docs/*.md present, so files added later are checked too.
 */
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { cliFlags, type CliFlags } from './helpers/cli-help.ts';
import { REPO_ROOT } from './helpers/cluster.ts';
import { readDocs, type DocFile } from './helpers/docs.ts';

/** Flags of other programs that the docs name in prose, with the program. */
const FOREIGN_FLAGS: Readonly<Record<string, string>> = {
  '--parallel': 'mocha',
  '--cpu-prof': 'node',
  '--quick': 'npm run bench',
  '--scale': 'docker compose',
  '--build': 'docker compose',
};

/** Lines or code spans that run another program: their flags are that program's. */
const FOREIGN_COMMAND = /^\s*(?:[$#] )?(?:curl|docker(?! run zerve| compose exec \S+ zerve)|kubectl|git|apt-get|pip|python3|node|npm(?! start| test)|mocha|npx (?!zerve))\b/;

/** Each place a doc names a flag: inline code spans and code-block lines (continuations joined). */
function codeFragments(doc: DocFile): { where: string; text: string }[] {
  const out: { where: string; text: string }[] = [];
  const lines = doc.text.split('\n');
  let inBlock = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith('```')) {
      inBlock = !inBlock;
      continue;
    }
    const where = `${doc.path}:${i + 1}`;
    if (inBlock) {
      let text = line;
      while (text.endsWith('\\') && i + 1 < lines.length) text = text.slice(0, -1) + lines[++i];
      out.push({ where, text: text.replace(/#.*$/, '') });
    } else {
      for (const [, span] of line.matchAll(/`([^`]+)`/g)) out.push({ where, text: span! });
    }
  }
  return out;
}

/** The flags a fragment names, each with the `zerve` command it belongs to ('*' when it names none). */
function flagsNamed(text: string, cli: CliFlags): { flag: string; command: string }[] {
  const out: { flag: string; command: string }[] = [];
  const at = text.search(/(?:^|\s)zerve /);
  if (at < 0) {
    for (const [flag] of text.matchAll(/(?<![\w-])--[a-z][a-z0-9-]*/g)) out.push({ flag, command: '*' });
    return out;
  }
  const words = text.slice(at).trim().split(/\s+/).slice(1);
  let command = '';
  for (const raw of words) {
    const word = raw.replace(/^[[(]+|[\])|,.]+$/g, '');
    const flag = /^--[a-z][a-z0-9-]*/.exec(word)?.[0];
    if (flag) {
      out.push({ flag, command });
      continue;
    }
    const child = command ? `${command} ${word}` : word;
    const sibling = command.includes(' ') ? `${command.slice(0, command.lastIndexOf(' '))} ${word}` : '';
    if (cli.has(child)) command = child;
    else if (sibling && cli.has(sibling)) command = sibling;
  }
  return out;
}

/** Option names of every `export interface ...Options` in shared/config.ts. */
async function configOptions(): Promise<string[]> {
  const source = await readFile(join(REPO_ROOT, 'shared', 'config.ts'), 'utf8');
  const names = new Set<string>();
  for (const [, body] of source.matchAll(/^export interface \w+Options\b[^{]*\{\n([^]*?)^\}/gm)) {
    for (const [, name] of body!.matchAll(/^ {2}(\w+)\??: /gm)) names.add(name!);
  }
  return [...names].sort();
}

const envName = (option: string) => `ZERVE_${option.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

/** ZERVE_* names the code and deployment files read or set. */
async function envNamesInCode(): Promise<Set<string>> {
  const names = new Set<string>();
  const visit = async (path: string): Promise<void> => {
    for (const entry of await readdir(join(REPO_ROOT, path), { withFileTypes: true })) {
      const child = join(path, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && entry.name !== 'public') await visit(child);
      } else if (/\.(ts|sh|ya?ml|json)$|^run$|^Dockerfile$/.test(entry.name)) {
        for (const [name] of (await readFile(join(REPO_ROOT, child), 'utf8')).matchAll(/ZERVE_[A-Z0-9_]+/g)) names.add(name);
      }
    }
  };
  for (const folder of ['broker', 'workers', 'webapp', 'shared', 'scripts', 'deploy', '.ci']) await visit(folder);
  return names;
}

describe('docs against the code', function () {
  this.timeout(180_000); // one `zerve ... --help` process per command, on a loaded machine

  let docs: DocFile[];
  let options: string[];
  before(async () => {
    [docs, options] = await Promise.all([readDocs(), configOptions()]);
  });

  it("names only flags that the command's --help lists (one process per command)", async () => {
    const cli = await cliFlags();
    const everyFlag = new Set([...cli.values()].flatMap((flags) => [...flags]));
    const wrong: string[] = [];
    for (const doc of docs) {
      for (const { where, text } of codeFragments(doc)) {
        if (FOREIGN_COMMAND.test(text)) continue;
        for (const { flag, command } of flagsNamed(text, cli)) {
          if (command === '*' ? everyFlag.has(flag) || flag in FOREIGN_FLAGS : cli.get(command)!.has(flag)) continue;
          wrong.push(`${where}: ${command === '*' ? 'no zerve command takes' : `zerve ${command} has no`} ${flag}`);
        }
      }
    }
    assert.deepEqual(wrong, []);
  });

  it('names only ZERVE_* variables that an option or the code defines', async () => {
    const known = new Set([...options.map(envName), ...(await envNamesInCode())]);
    const wrong = docs.flatMap((doc) => [...doc.text.matchAll(/ZERVE_[A-Z0-9_]+/g)].map(([name]) => name).filter((name) => !known.has(name)).map((name) => `${doc.path}: ${name}`));
    assert.deepEqual(wrong, []);
  });

  it('documents every option of shared/config.ts', () => {
    const named = new Set(docs.flatMap((doc) => codeFragments(doc).flatMap(({ text }) => text.split(/[^A-Za-z0-9_]+/))));
    assert.ok(options.length > 40, `read ${options.length} options from shared/config.ts`);
    assert.deepEqual(options.filter((option) => !named.has(option)), []);
  });

  it('hand-writes no test count', () => {
    const counts = docs.flatMap((doc) => [...doc.text.matchAll(/\b\d[\d,]* (?:tests|test files|passing)\b/g)].map(([text]) => `${doc.path}: ${text}`));
    assert.deepEqual(counts, []);
  });
});
