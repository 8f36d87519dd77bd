/**
 * Test helpers: an in-process broker on random ports, CLI child processes for workers (real
 * processes, so they can be killed), and the provided fixtures beside the repository.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Broker } from '../../broker/broker.ts';
import type { BrokerOptions } from '../../shared/config.ts';
import type { WorkerInfo } from '../../shared/messages.ts';
import { CLI_PATH } from '../../scripts/process-supervisor.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** `../shared/fixtures` beside the repository: provided models and images (read only). */
export const FIXTURES = resolve(REPO_ROOT, '..', 'shared', 'fixtures');
export const fixtureImage = (name: string) => join(FIXTURES, 'images', name);
export const fixtureModel = (name: string) => join(FIXTURES, 'models', name);

/** Fast heartbeats so tests see dead peers within a second. */
export const TEST_HEARTBEAT_MS = 200;

export const TEST_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  ZERVE_LOG_LEVEL: process.env.ZERVE_LOG_LEVEL ?? 'warn',
  ZERVE_HEARTBEAT_INTERVAL_MS: String(TEST_HEARTBEAT_MS),
};

export async function startBroker(options: Partial<BrokerOptions> = {}): Promise<Broker> {
  const broker = new Broker({
    frontend: `tcp://127.0.0.1:${testPort()}`,
    backend: `tcp://127.0.0.1:${testPort()}`,
    heartbeatIntervalMs: TEST_HEARTBEAT_MS,
    ...options,
  });
  await broker.start();
  return broker;
}

/**
 * A random port below Linux's ephemeral range (32768-60999), not a wildcard bind inside it: tests restart
 * brokers on the same ports while workers reconnect, and a reconnecting peer can be handed the closed
 * port itself as its source port and connect to itself (TCP simultaneous open), holding the port so the
 * restarted broker cannot bind it.
 */
function testPort(): number {
  return 20_000 + Math.floor(Math.random() * 12_000);
}

/** A TCP port nobody listens on right now, for a child process that must be told its ports. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolvePromise) => server.listen(0, '127.0.0.1', resolvePromise));
  const { port } = server.address() as { port: number };
  await new Promise((resolvePromise) => server.close(resolvePromise));
  return port;
}

/** Resolves with the next worker the broker registers that matches `predicate`. */
export function nextWorker(broker: Broker, predicate: (w: WorkerInfo) => boolean = () => true): Promise<WorkerInfo> {
  return new Promise((resolvePromise) => {
    const listener = (info: WorkerInfo) => {
      if (!predicate(info)) return;
      broker.off('worker-ready', listener);
      resolvePromise(info);
    };
    broker.on('worker-ready', listener);
  });
}

/** A `zerve ...` child process. */
export class CliProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;
  stdout = '';
  stderr = '';

  /** @param wrapper command the CLI runs under, e.g. `['ip', 'netns', 'exec', NS]` (it must exec, not fork) */
  constructor(args: string[], env: NodeJS.ProcessEnv = TEST_ENV, wrapper: string[] = []) {
    const argv = [process.execPath, '--import', 'tsx', CLI_PATH, ...args];
    const [command, ...rest] = [...wrapper, ...argv];
    this.child = spawn(command!, rest, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (chunk: Buffer) => (this.stdout += chunk.toString()));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = once(this.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Kills the process (SIGKILL unless told) and waits for it; harmless if it already exited. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    await this.exited;
  }
}

/** Runs `zerve <args>` to completion. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = TEST_ENV): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = new CliProcess(args, env);
  const [code] = await cli.exited;
  return { code, stdout: cli.stdout, stderr: cli.stderr };
}

/** Starts a worker child process and resolves once the broker has registered it. */
export async function spawnWorker(
  broker: Broker,
  args: string[],
  predicate?: (w: WorkerInfo) => boolean,
  env: NodeJS.ProcessEnv = TEST_ENV,
): Promise<CliProcess> {
  const cli = new CliProcess(['worker', ...args, '--connect', broker.backendEndpoint], env);
  const ready = nextWorker(broker, (w) => w.pid === cli.pid && (predicate?.(w) ?? true));
  const exitedEarly = cli.exited.then(([code]) => {
    throw new Error(`worker exited (${code}) before registering: ${cli.stderr}`);
  });
  exitedEarly.catch(() => undefined);
  await Promise.race([ready, exitedEarly]);
  return cli;
}

/** Polls `check` every 50 ms until it holds; fails after `timeoutMs` (a hang guard, not a speed check). */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function tempDir(prefix = 'zerve-test-'): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}
