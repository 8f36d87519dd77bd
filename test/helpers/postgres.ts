/**
 * A real PostgreSQL server of the test's own: `initdb` in a temporary folder and `pg_ctl`, run as
 * the `postgres` user when the tests run as root (CI), on a TCP port of its own, stopped and removed
 * at `close()` (and by a process `exit` handler if the run ends without it).
 *
 * API:
 * - `postgresUnavailable(): string | undefined` — why a server cannot be started here (Debian's
 *   `postgresql` package missing), or undefined. `skipUnlessPostgres(this)` in a mocha `before`
 *   skips the suite with the reason, or fails it under ZERVE_CI=1 (.ci/run installs the package).
 * - `await TestPostgres.start({ durable })` — a running server (`fsync=off` unless `durable`: tests need
 *   no crash safety, a benchmark does); `url` is `postgres://zerve:<password>@127.0.0.1:<port>/zerve`,
 *   `urlFor(database)` the same for another database (`createDatabase(name)` makes one).
 *   `socketUrl` reaches the same database through the server's unix socket in `dir`
 *   (`postgres://zerve:<password>@/zerve?host=<dir>&port=<port>`, the port names the socket file):
 *   processes in another network namespace (test/helpers/netns.ts) cannot reach the test's
 *   127.0.0.1, but they share its file system.
 * - `await pg.stop()` / `await pg.restart()` — the server down (fast shutdown) and up again on the same port.
 * - `await pg.close()` — stops the server and removes its folder; idempotent.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';

const run = promisify(execFile);
/** Debian keeps each major version's programs in /usr/lib/postgresql/<major>/bin: the newest, or ZERVE_PG_BIN. */
function postgresBin(): string {
  if (process.env.ZERVE_PG_BIN) return process.env.ZERVE_PG_BIN;
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root) ? readdirSync(root).filter((d) => /^\d+$/.test(d)).map(Number).sort((x, y) => y - x) : [];
  return join(root, String(majors[0] ?? 15), 'bin');
}
const BIN = postgresBin();
const USER = 'zerve';

/** Why a PostgreSQL server cannot be started here, or undefined when it can. */
export function postgresUnavailable(): string | undefined {
  if (!existsSync(join(BIN, 'initdb')) || !existsSync(join(BIN, 'pg_ctl'))) {
    return `PostgreSQL is not installed (no initdb/pg_ctl in ${BIN}; Debian package postgresql)`;
  }
  if (process.getuid?.() === 0) {
    try {
      execFileSync('id', ['postgres'], { stdio: 'ignore' });
    } catch {
      return 'running as root, and there is no postgres user to run the server as';
    }
  }
  return undefined;
}

/** In a mocha `before`: skips the suite when PostgreSQL is missing, or fails it in CI. */
export function skipUnlessPostgres(context: Mocha.Context): void {
  const missing = postgresUnavailable();
  if (missing && process.env.ZERVE_CI) throw new Error(missing); // .ci/run installs the package
  if (missing) {
    console.warn(`      skipped: ${missing}`);
    context.skip();
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const live = new Set<TestPostgres>();
process.once('exit', () => {
  for (const pg of live) pg.closeSync();
});

export class TestPostgres {
  readonly dir: string;
  readonly port: number;
  readonly password: string;
  private readonly asRoot: boolean;
  private closing: Promise<void> | undefined;

  private readonly durable: boolean;

  private constructor(dir: string, port: number, password: string, durable: boolean) {
    this.durable = durable;
    this.dir = dir;
    this.port = port;
    this.password = password;
    this.asRoot = process.getuid?.() === 0;
  }

  /** initdb, then start the server; the `zerve` role owns a `zerve` database. */
  static async start(options: { durable?: boolean } = {}): Promise<TestPostgres> {
    const dir = mkdtempSync(join(tmpdir(), 'zerve-pg-'));
    const pg = new TestPostgres(dir, await freePort(), randomBytes(12).toString('hex'), options.durable ?? false);
    live.add(pg);
    try {
      if (pg.asRoot) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres']).toString()), Number(execFileSync('id', ['-g', 'postgres']).toString()));
      const pwfile = join(dir, 'pwfile');
      writeFileSync(pwfile, pg.password, { mode: 0o600 });
      if (pg.asRoot) execFileSync('chown', ['postgres', pwfile]);
      await pg.exec(join(BIN, 'initdb'), ['-D', pg.dataDir, '-U', USER, `--pwfile=${pwfile}`, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-sync']);
      await pg.up();
      await pg.exec(join(BIN, 'createdb'), ['-h', pg.dir, '-p', String(pg.port), '-U', USER, USER]);
      return pg;
    } catch (err) {
      await pg.close();
      throw err;
    }
  }

  get url(): string {
    return this.urlFor(USER);
  }

  urlFor(database: string, password = this.password): string {
    return `postgres://${USER}:${password}@127.0.0.1:${this.port}/${database}`;
  }

  /** `url` through the unix socket the server also listens on (`-k dir`); see the header. */
  get socketUrl(): string {
    return `postgres://${USER}:${this.password}@/${USER}?host=${encodeURIComponent(this.dir)}&port=${this.port}`;
  }

  async createDatabase(name: string): Promise<string> {
    await this.exec(join(BIN, 'createdb'), ['-h', this.dir, '-p', String(this.port), '-U', USER, name]);
    return this.urlFor(name);
  }

  /** Stops the server (fast: open sessions are cut). */
  async stop(): Promise<void> {
    await this.exec(join(BIN, 'pg_ctl'), ['-D', this.dataDir, '-m', 'fast', '-w', 'stop']);
  }

  async up(): Promise<void> {
    const options = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=${this.durable ? 'on' : 'off'} -c max_connections=100`;
    await this.exec(join(BIN, 'pg_ctl'), ['-D', this.dataDir, '-l', join(this.dir, 'server.log'), '-o', options, '-w', 'start']);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.up();
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        if (existsSync(join(this.dataDir, 'postmaster.pid'))) await this.stop();
      } catch {
        // removed below anyway
      }
      live.delete(this);
      rmSync(this.dir, { recursive: true, force: true });
    })();
    return this.closing;
  }

  /** For the exit handler: the same as close, synchronously. */
  closeSync(): void {
    try {
      if (existsSync(join(this.dataDir, 'postmaster.pid'))) this.execSync(join(BIN, 'pg_ctl'), ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop']);
    } catch {
      // best effort at exit
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private get dataDir(): string {
    return join(this.dir, 'data');
  }

  private async exec(program: string, args: string[]): Promise<void> {
    const [file, argv] = this.asRoot ? ['runuser', ['-u', 'postgres', '--', program, ...args]] : [program, args];
    await run(file, argv, { cwd: tmpdir() });
  }

  private execSync(program: string, args: string[]): void {
    const [file, argv] = this.asRoot ? ['runuser', ['-u', 'postgres', '--', program, ...args]] : [program, args];
    execFileSync(file, argv, { cwd: tmpdir(), stdio: 'ignore' });
  }
}
