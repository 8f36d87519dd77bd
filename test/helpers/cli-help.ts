import { runCli } from './cluster.ts';

/** Every `zerve` command path (`''` for the root, `worker inference`, ...) with the flags its `--help` lists. */
export type CliFlags = ReadonlyMap<string, ReadonlySet<string>>;

let discovered: Promise<CliFlags> | undefined;

/**
 * Walks the CLI's command tree by running `zerve [path] --help` for every command, one child process per
 * command, each level in parallel; cached for the test process, so several test files can ask.
 */
export function cliFlags(): Promise<CliFlags> {
  discovered ??= discover();
  return discovered;
}

async function discover(): Promise<CliFlags> {
  const flags = new Map<string, Set<string>>();
  let level = [''];
  while (level.length > 0) {
    const helps = await Promise.all(level.map((path) => runCli([...(path ? path.split(' ') : []), '--help'])));
    const next: string[] = [];
    level.forEach((path, i) => {
      const { code, stdout, stderr } = helps[i]!;
      if (code !== 0) throw new Error(`zerve ${path} --help exited ${code}: ${stderr}`);
      flags.set(path, new Set(stdout.match(/(?<=^\s+(?:-\w, )?)--[a-z][a-z0-9-]*/gm) ?? []));
      const commands = stdout.split(/^Commands:$/m)[1] ?? '';
      for (const [, name] of commands.matchAll(/^ {2}([a-z][a-z0-9-]*)/gm)) if (name !== 'help') next.push(path ? `${path} ${name}` : name!);
    });
    level = next;
  }
  return flags;
}
