/**
 * Real hosts for multi-host tests: Linux network namespaces joined by veth links.
 *
 * Topology (names carry the test process's pid, so concurrent runs never collide):
 *
 *     ns zt<pid>-broker: lo, bridge `br0` 10.231.<n>.1/24, bridge ports `p-<host>`
 *     ns zt<pid>-<host>: lo, `eth0` 10.231.<n>.<2+i>/24  <-- veth -->  `p-<host>` in the broker ns
 *
 * Addresses exist only on these links; nothing is added to the machine's own namespace, so traffic
 * between hosts never leaves the links the test made. The test process itself stays in the machine's
 * namespace and reaches the broker host through `ipc://` endpoints (`lab.ipc(name)`): unix sockets
 * live in the file system, which all namespaces share.
 *
 * API (stable; other tests build on it):
 * - `netnsUnavailable(): string | undefined` — why namespaces cannot be built here (not root, no
 *   `ip netns`), or undefined. `skipUnlessNetns(this)` in a mocha `before` skips the suite with it.
 * - `await NetnsLab.create(['a', 'b'])` — a broker host (`lab.broker`) and one worker host per name
 *   (`lab.host('a')`, all of them: `lab.workerHosts()`); each `NetnsHost` has `name`, `ns` (also its
 *   host name), `address` (its IPv4 on the lab's /24), `models/` and `data/` (its own, empty, temp
 *   folders) and `link` (the veth end in the broker namespace). `lab.dir` is the lab's temp folder
 *   (put keys and the like there; removed at close), `lab.subnet` its /24 as `10.231.<n>`.
 * - `lab.spawn(host, args, env?)` — starts `zerve <args>` inside the host's namespace with
 *   `ip netns exec` (and its own UTS namespace: `os.hostname()` is the host's `ns`); returns a `CliProcess` (test/helpers/cluster.ts), killed at `close()`.
 *   `lab.run(host, args, env?)` runs one to completion.
 * - `lab.exec(host, command, args)` — any program inside the host's namespace, to completion.
 * - `lab.tcp(host, port)` — `tcp://<address>:<port>` of a host; `lab.ipc(name)` — an `ipc://`
 *   endpoint in the lab's folder, reachable from the test process.
 * - `await lab.cut(host)` / `await lab.restore(host)` — `ip link set <link> down/up`: the host's
 *   cable pulled and put back (both veth ends lose carrier).
 * - `await lab.close()` — kills the lab's processes, deletes its namespaces and folders; idempotent.
 *   A process `exit` handler does the same synchronously if the test run ends without it, and
 *   `create` removes namespaces left by earlier runs whose process is gone (for example SIGKILLed).
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CliProcess, TEST_ENV } from './cluster.ts';
import { isAlive } from '../../shared/process-alive.ts';

const run = promisify(execFile);
const PREFIX = 'zt';
const BROKER_HOST = 'broker';

export interface NetnsHost {
  /** Name given to `create` (`'broker'` for the broker host). */
  name: string;
  /** Network namespace name, for `ip netns exec`; also the host name its processes see (own UTS namespace). */
  ns: string;
  /** The host's IPv4 address on the lab's /24. */
  address: string;
  /** The host's own model repository folder (empty at start). */
  models: string;
  /** The host's own data folder (empty at start). */
  data: string;
  /** The veth end in the broker namespace (on the bridge) that `cut` takes down; '' for the broker. */
  link: string;
}

let cachedReason: string | undefined | null = null;

/** Why network-namespace hosts cannot be built on this machine, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (cachedReason !== null) return cachedReason;
  if (process.platform !== 'linux') return (cachedReason = `network namespaces need Linux, this is ${process.platform}`);
  if (process.getuid?.() !== 0) return (cachedReason = 'network namespaces need root (CI runs as root)');
  const probe = `${PREFIX}${process.pid}-probe`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
    execFileSync('ip', ['-n', probe, 'link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1'], { stdio: 'pipe' });
    cachedReason = undefined;
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    cachedReason = `ip netns or veth unavailable: ${stderr || (err as Error).message}`;
  } finally {
    try {
      execFileSync('ip', ['netns', 'delete', probe], { stdio: 'pipe' });
    } catch {
      // the probe was never made
    }
  }
  return cachedReason;
}

/** In a mocha `before`: skips the suite, saying why, where namespaces cannot be built. */
export function skipUnlessNetns(ctx: Mocha.Context): void {
  const reason = netnsUnavailable();
  if (reason === undefined) return;
  process.stderr.write(`      skipped: ${reason}\n`);
  ctx.skip();
}

/** Labs still open, for the exit handler. */
const openLabs = new Set<NetnsLab>();
let exitHandlerInstalled = false;

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on('exit', () => {
    for (const lab of openLabs) lab.closeSync();
  });
}

/** Deletes namespaces of earlier runs whose process no longer exists (a SIGKILLed mocha). */
function removeStaleNamespaces(): void {
  let list = '';
  try {
    list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  } catch {
    return;
  }
  for (const line of list.split('\n')) {
    const match = new RegExp(`^(${PREFIX}(\\d+)-\\S+)`).exec(line);
    if (!match) continue;
    const pid = Number(match[2]);
    if (pid === process.pid || isAlive(pid)) continue;
    try {
      execFileSync('ip', ['netns', 'delete', match[1]!], { stdio: 'pipe' });
    } catch {
      // already gone
    }
  }
}


let labCounter = 0;

export class NetnsLab {
  readonly broker: NetnsHost;
  private readonly hosts = new Map<string, NetnsHost>();
  private readonly processes = new Set<CliProcess>();
  private closing?: Promise<void>;
  private closedSync = false;

  private constructor(
    /** The lab's temp folder: hosts' folders and ipc endpoints. */
    readonly dir: string,
    /** The lab's /24 as `10.231.<n>`. */
    readonly subnet: string,
    hosts: NetnsHost[],
  ) {
    for (const host of hosts) this.hosts.set(host.name, host);
    this.broker = this.hosts.get(BROKER_HOST)!;
  }

  /** Builds the broker host and one worker host per name (at most 200; names `[a-z0-9]{1,8}`). */
  static async create(workerHosts: string[] = ['a', 'b']): Promise<NetnsLab> {
    const reason = netnsUnavailable();
    if (reason) throw new Error(reason);
    for (const name of workerHosts) {
      if (!/^[a-z0-9]{1,8}$/.test(name) || name === BROKER_HOST) throw new Error(`bad host name ${name}`);
    }
    installExitHandler();
    removeStaleNamespaces();
    const id = `${PREFIX}${process.pid}${labCounter > 0 ? `x${labCounter}` : ''}`;
    // Each lab's addresses live only inside its own namespaces, so the /24 may repeat across runs;
    // it differs per lab of one run only to keep logs readable.
    const subnet = `10.231.${labCounter++ % 250}`;
    const dir = await mkdtemp(join(tmpdir(), `zerve-netns-${process.pid}-`));
    const names = [BROKER_HOST, ...workerHosts];
    const hosts: NetnsHost[] = [];
    for (const [i, name] of names.entries()) {
      const root = join(dir, name);
      await mkdir(join(root, 'models'), { recursive: true });
      await mkdir(join(root, 'data'), { recursive: true });
      hosts.push({
        name,
        ns: `${id}-${name}`,
        address: `${subnet}.${i + 1}`,
        models: join(root, 'models'),
        data: join(root, 'data'),
        link: name === BROKER_HOST ? '' : `p-${name}`,
      });
    }
    const lab = new NetnsLab(dir, subnet, hosts);
    openLabs.add(lab);
    try {
      await lab.build();
    } catch (err) {
      await lab.close();
      throw err;
    }
    return lab;
  }

  private async build(): Promise<void> {
    const b = this.broker.ns;
    await run('ip', ['netns', 'add', b]);
    await run('ip', ['-n', b, 'link', 'set', 'lo', 'up']);
    await run('ip', ['-n', b, 'link', 'add', 'br0', 'type', 'bridge']);
    await run('ip', ['-n', b, 'addr', 'add', `${this.broker.address}/24`, 'dev', 'br0']);
    await run('ip', ['-n', b, 'link', 'set', 'br0', 'up']);
    for (const host of this.hosts.values()) {
      if (host === this.broker) continue;
      await run('ip', ['netns', 'add', host.ns]);
      await run('ip', ['-n', host.ns, 'link', 'set', 'lo', 'up']);
      // Made inside the namespaces: the machine's own namespace never sees these interfaces.
      await run('ip', ['-n', b, 'link', 'add', host.link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.ns]);
      await run('ip', ['-n', b, 'link', 'set', host.link, 'master', 'br0']);
      await run('ip', ['-n', b, 'link', 'set', host.link, 'up']);
      await run('ip', ['-n', host.ns, 'addr', 'add', `${host.address}/24`, 'dev', 'eth0']);
      await run('ip', ['-n', host.ns, 'link', 'set', 'eth0', 'up']);
    }
  }

  /** A worker host by name, or the broker host as `'broker'`. */
  host(name: string): NetnsHost {
    const host = this.hosts.get(name);
    if (!host) throw new Error(`no host ${name} in this lab`);
    return host;
  }

  /** Worker hosts (every host but the broker's). */
  workerHosts(): NetnsHost[] {
    return [...this.hosts.values()].filter((h) => h !== this.broker);
  }

  tcp(host: NetnsHost | string, port: number): string {
    return `tcp://${this.resolve(host).address}:${port}`;
  }

  /** An `ipc://` endpoint in the lab's folder: reachable from the test process and from every host. */
  ipc(name: string): string {
    return `ipc://${join(this.dir, `${name}.sock`)}`;
  }

  /** Starts `zerve <args>` inside the host's namespace; the lab kills it at `close()`. */
  spawn(host: NetnsHost | string, args: string[], env: NodeJS.ProcessEnv = TEST_ENV): CliProcess {
    const { ns } = this.resolve(host);
    // Its own UTS namespace too, so `os.hostname()` (the host in READY and `zerve status`) is the host's.
    const wrapper = ['ip', 'netns', 'exec', ns, 'unshare', '--uts', '--', 'sh', '-c', 'hostname "$0" && exec "$@"', ns];
    const cli = new CliProcess(args, env, wrapper);
    this.processes.add(cli);
    void cli.exited.then(() => this.processes.delete(cli));
    return cli;
  }

  /** Runs `zerve <args>` to completion inside the host's namespace. */
  async run(host: NetnsHost | string, args: string[], env: NodeJS.ProcessEnv = TEST_ENV): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const cli = this.spawn(host, args, env);
    const [code] = await cli.exited;
    return { code, stdout: cli.stdout, stderr: cli.stderr };
  }

  /** Runs any program inside the host's namespace to completion; rejects on a non-zero exit. */
  async exec(host: NetnsHost | string, command: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
    return run('ip', ['netns', 'exec', this.resolve(host).ns, command, ...args]);
  }

  /** Pulls the host's cable: its veth end on the bridge goes down. */
  async cut(host: NetnsHost | string): Promise<void> {
    await run('ip', ['-n', this.broker.ns, 'link', 'set', this.linkOf(host), 'down']);
  }

  /** Puts the host's cable back. */
  async restore(host: NetnsHost | string): Promise<void> {
    await run('ip', ['-n', this.broker.ns, 'link', 'set', this.linkOf(host), 'up']);
  }

  /** Kills the lab's processes, deletes its namespaces and folders; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.processes].map((p) => p.kill()));
      for (const host of this.hosts.values()) {
        await run('ip', ['netns', 'delete', host.ns]).catch(() => undefined);
      }
      await rm(this.dir, { recursive: true, force: true });
      openLabs.delete(this);
    })();
    return this.closing;
  }

  /** The exit handler's synchronous `close()`. */
  closeSync(): void {
    if (this.closedSync) return;
    this.closedSync = true;
    for (const p of this.processes) {
      try {
        p.child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const host of this.hosts.values()) {
      try {
        execFileSync('ip', ['netns', 'delete', host.ns], { stdio: 'pipe' });
      } catch {
        // already deleted
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private resolve(host: NetnsHost | string): NetnsHost {
    return typeof host === 'string' ? this.host(host) : host;
  }

  private linkOf(host: NetnsHost | string): string {
    const h = this.resolve(host);
    if (h === this.broker) throw new Error('the broker host has no link of its own to cut; cut a worker host');
    return h.link;
  }
}
