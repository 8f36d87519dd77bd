/**
 * The PostgreSQL connection pool every store on `--store postgres://…` uses: node-postgres' `Pool`
 * with a statement timeout, and the one place that turns a failure to reach the server into
 * `STORE_UNAVAILABLE`. A pool reconnects by itself: a connection the server dropped is discarded and
 * the next query opens a new one.
 */
import pg from 'pg';
import { ZerveError } from '../errors.ts';
import type { Logger } from '../logger.ts';

export interface PostgresPoolOptions {
  /** Longest time one statement may run before the server cancels it. @defaultValue 10000 */
  statementTimeoutMs: number;
  /** Longest wait for a connection (new or from the pool). @defaultValue 5000 */
  connectTimeoutMs: number;
  /** Connections per pool. @defaultValue 10 */
  maxConnections: number;
}

export const DEFAULT_POSTGRES_POOL_OPTIONS: PostgresPoolOptions = {
  statementTimeoutMs: 10_000,
  connectTimeoutMs: 5_000,
  maxConnections: 10,
};

const INT8_OID = 20;

/** SQLSTATE classes and codes that mean "the server cannot serve now", not "this query is wrong". */
function isUnavailableState(code: string): boolean {
  return (
    code.startsWith('08') || // connection exception
    code.startsWith('53') || // insufficient resources (too many connections, disk full)
    code === '57P01' || // admin shutdown
    code === '57P02' || // crash shutdown
    code === '57P03' || // cannot connect now (starting up, shutting down)
    code === '57014' || // query canceled: the statement timeout
    code === '40001' || // serialization failure
    code === '40P01' // deadlock detected
  );
}

/**
 * The error to answer for a failed store operation: STORE_UNAVAILABLE when the server could not be
 * reached or gave up (the pool's own errors carry no SQLSTATE: refused, reset, timed out), INTERNAL
 * for an error the server reports about the statement itself.
 */
export function storeErrorOf(err: unknown, location: string): ZerveError {
  if (err instanceof ZerveError) return err;
  if (err instanceof pg.DatabaseError && !(err.code !== undefined && isUnavailableState(err.code))) {
    return new ZerveError('INTERNAL', `the store ${location} failed: ${err.message}`, { cause: err });
  }
  const reason = err instanceof Error ? err.message : String(err);
  return new ZerveError('STORE_UNAVAILABLE', `the store ${location} is unavailable: ${reason}`, { cause: err });
}

/** Stands in for the empty host of a unix-socket URL while it is parsed; never sent anywhere. */
const NO_HOST = 'no-host.invalid';

/**
 * `url` parsed. libpq's form for a unix socket, `postgres://user:password@/database?host=/socket/dir`,
 * has an empty host after credentials, which WHATWG URL refuses but node-postgres accepts: it is
 * parsed with a stand-in host, and `hostless` says to leave that out again.
 */
function parseStoreUrl(url: string): { parsed: URL; hostless: boolean } {
  const match = /^([a-z][a-z0-9+.-]*:\/\/[^/?#]*@)([/?#].*)?$/is.exec(url);
  if (match) return { parsed: new URL(`${match[1]}${NO_HOST}${match[2] ?? ''}`), hostless: true };
  return { parsed: new URL(url), hostless: false };
}

/** A URL without its password, for logs and messages. */
export function redactedUrl(url: string): string {
  try {
    const { parsed, hostless } = parseStoreUrl(url);
    if (parsed.password) parsed.password = '***';
    const text = parsed.toString();
    return hostless ? text.replace(`@${NO_HOST}`, '@') : text;
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

/**
 * A pool on `url`, checked with one query so that a wrong URL, a wrong password or a server that
 * refuses connections fails here with a message naming the store. Closing it is `pool.end()`.
 */
export async function openPostgresPool(url: string, options: Partial<PostgresPoolOptions>, log: Logger): Promise<pg.Pool> {
  const o = { ...DEFAULT_POSTGRES_POOL_OPTIONS, ...options };
  const location = redactedUrl(url);
  let parsed: URL;
  try {
    ({ parsed } = parseStoreUrl(url));
  } catch (err) {
    throw new ZerveError('BAD_CONFIG', `the store URL is not a URL: expected postgres://user:password@host:port/database`, { cause: err });
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new ZerveError('BAD_CONFIG', `the store ${location} is not a postgres:// URL`);
  }
  const pool = new pg.Pool({
    connectionString: url,
    max: o.maxConnections,
    connectionTimeoutMillis: o.connectTimeoutMs,
    statement_timeout: o.statementTimeoutMs,
    application_name: 'zerve',
    // Times are BIGINT ms since epoch: well within a double, so read them as numbers, not strings.
    types: { getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === INT8_OID ? Number : pg.types.getTypeParser(oid, format))) as typeof pg.types.getTypeParser },
  });
  // An idle connection the server closed (restart, failover) must not take the process down; the
  // pool discards it and the next query connects anew.
  pool.on('error', (err) => log.warn({ reason: err.message, store: location }, 'an idle store connection was lost'));
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    const reason = err instanceof Error ? err.message : String(err);
    // 28P01 wrong password, 28000 no such role or not allowed, 3D000 no such database: settings, not an outage.
    const code = err instanceof pg.DatabaseError && /^(28|3D)/.test(err.code ?? '') ? 'BAD_CONFIG' : 'STORE_UNAVAILABLE';
    throw new ZerveError(code, `cannot open the store ${location}: ${reason}`, { cause: err });
  }
  return pool;
}

/** Runs `work` in one transaction on one connection: committed whole, or rolled back whole. */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  // A session the server drops between two statements emits 'error' on the checked-out client; with
  // no listener that would take the process down. The next statement fails, and the work with it.
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true; // the connection itself failed: do not give it back to the pool
    });
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}
