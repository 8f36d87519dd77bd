import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { CLI_PATH } from '../process-supervisor.ts';

/** Environment of the benchmark's children: quiet logs, so logging costs nothing measurable. */
export const CHILD_ENV: NodeJS.ProcessEnv = { ...process.env, ZERVE_LOG_LEVEL: 'warn' };

/**
 * A child process of the benchmark: `zerve <args>` by default, any TypeScript file run with
 * `node --import tsx`, or (`CliChild.program`) any executable. Keeps the last few KB of its output
 * for error messages.
 */
export class CliChild {
  readonly child: ChildProcess;
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;
  private output = '';

  constructor(
    readonly args: string[],
    script: string = CLI_PATH,
    env: NodeJS.ProcessEnv = CHILD_ENV,
    command: string[] = [process.execPath, '--import', 'tsx', script],
  ) {
    this.child = spawn(command[0]!, [...command.slice(1), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-8192);
    };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    this.exited = once(this.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  }

  /** An executable that is not a TypeScript file, such as the Guide's C broker. */
  static program(executable: string, args: string[], env: NodeJS.ProcessEnv = CHILD_ENV): CliChild {
    return new CliChild(args, executable, env, [executable]);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Its recent stdout and stderr. */
  get recentOutput(): string {
    return this.output;
  }

  /** Resolves with the first line of stdout matching `pattern`; rejects if the child exits first. */
  async waitForLine(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      let buffered = '';
      const timer = setTimeout(() => finish(new Error(`no line matching ${pattern} within ${timeoutMs} ms`)), timeoutMs);
      const onData = (chunk: Buffer) => {
        buffered += chunk.toString();
        const match = pattern.exec(buffered);
        if (match) finish(undefined, match);
      };
      const onExit = () => finish(new Error(`${this.args.join(' ')} exited early: ${this.output}`));
      const finish = (err?: Error, match?: RegExpExecArray) => {
        clearTimeout(timer);
        this.child.stdout!.off('data', onData);
        this.child.off('exit', onExit);
        if (err) reject(err);
        else resolve(match!);
      };
      this.child.stdout!.on('data', onData);
      this.child.once('exit', onExit);
    });
  }

  /** SIGTERM (a graceful stop), then SIGKILL after `graceMs`; harmless once exited. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
