import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../shared/logger.ts';
import { SUPERVISED_ENV } from './supervisor-watch.ts';

/** The CLI entry point, run by children as `node --import tsx scripts/zerve.ts ...`. */
export const CLI_PATH = fileURLToPath(new URL('./zerve.ts', import.meta.url));

export interface SupervisedProcess {
  name: string;
  args: string[];
  child?: ChildProcess;
  restarts: number;
  /** Set by `retire()`: stopped on purpose, not restarted. */
  retired?: boolean;
}

/**
 * Runs CLI subcommands as child processes (`zerve up`'s workers) and restarts one that dies, with a
 * growing delay, until `close()`, which sends SIGTERM (graceful stop) and waits for every child.
 * Children stop by themselves when this process dies (scripts/supervisor-watch.ts).
 */
export class ProcessSupervisor {
  private readonly processes: SupervisedProcess[] = [];
  /** Exits of retired processes still draining: `close()` waits for them too. */
  private readonly retiring = new Set<Promise<unknown>>();
  private closing?: Promise<void>;

  constructor(private readonly log: Logger, private readonly env: NodeJS.ProcessEnv = process.env) {}

  /** Starts `zerve <args>` as a child process named `name`. */
  add(name: string, args: string[]): SupervisedProcess {
    const entry: SupervisedProcess = { name, args, restarts: 0 };
    this.processes.push(entry);
    this.launch(entry);
    return entry;
  }

  /**
   * Stops one process for good: SIGTERM (a worker then drains: it finishes what it holds, says
   * DISCONNECT and exits), not restarted. Resolves when it has exited.
   */
  async retire(entry: SupervisedProcess): Promise<void> {
    entry.retired = true;
    const index = this.processes.indexOf(entry);
    if (index >= 0) this.processes.splice(index, 1);
    const child = entry.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    this.retiring.add(exited);
    child.kill('SIGTERM');
    await exited;
    this.retiring.delete(exited);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all(
        this.processes.map(async ({ child }) => {
          if (!child || child.exitCode !== null || child.signalCode !== null) return;
          const exited = once(child, 'exit');
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(timer);
        }),
      );
      await Promise.all(this.retiring);
    })();
    return this.closing;
  }

  private launch(entry: SupervisedProcess): void {
    // The stdin pipe is the child's lifeline: it closes when this process dies, however it dies.
    const child = spawn(process.execPath, ['--import', 'tsx', CLI_PATH, ...entry.args], {
      stdio: ['pipe', 'inherit', 'inherit'],
      env: { ...this.env, [SUPERVISED_ENV]: '1' },
    });
    entry.child = child;
    child.on('exit', (code, signal) => {
      if (this.closing || entry.retired) return;
      const delayMs = Math.min(30_000, 500 * 2 ** Math.min(entry.restarts, 6));
      entry.restarts++;
      this.log.error({ process: entry.name, code, signal, restartInMs: delayMs }, 'child process died; restarting');
      setTimeout(() => {
        if (!this.closing && !entry.retired) this.launch(entry);
      }, delayMs).unref();
    });
  }
}
