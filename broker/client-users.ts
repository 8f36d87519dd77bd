import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { ZerveError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { encodeCaller, type CallerIdentity } from '../shared/protocol.ts';

const RELOAD_DEBOUNCE_MS = 100;
const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;
const USER_NAME = /^[^\s*][^\s]{0,127}$/;
const ROLES = new Set<string>(['admin', 'member', 'viewer']);
/** The user column of a trusted client: it may speak for any user (`asUser` in its headers). */
export const TRUSTED_CLIENT = '*';

/** What one client key stands for: a user (with the caller frame the broker stamps), or a trusted client. */
export type ClientUser = { trusted: true } | { trusted: false; caller: CallerIdentity; frame: Buffer };

/**
 * Reads a `--client-users` file: one client per line, `<Z85 public key> <user> [admin|member|viewer]`
 * (role `member` when left out), or `<key> *` for a trusted client (the web app) that says in each
 * request's header which user it speaks for. A line that starts with `#` is a comment.
 */
export function readClientUsers(path: string): Map<string, ClientUser> {
  const users = new Map<string, ClientUser>();
  readFileSync(path, 'utf8').split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return; // a Z85 key may hold '#': only whole lines are comments
    const [key, user, role = 'member', ...rest] = line.split(/\s+/);
    const where = `${path} line ${i + 1}`;
    if (!Z85_KEY.test(key!) || user === undefined || rest.length > 0) {
      throw new ZerveError('BAD_CONFIG', `${where}: expected "<Z85 public key> <user> [role]" or "<key> *"`);
    }
    if (user === TRUSTED_CLIENT) {
      users.set(key!, { trusted: true });
      return;
    }
    if (!USER_NAME.test(user)) throw new ZerveError('BAD_CONFIG', `${where}: bad user name ${JSON.stringify(user)}`);
    if (!ROLES.has(role)) throw new ZerveError('BAD_CONFIG', `${where}: role must be admin, member or viewer, got ${role}`);
    const caller: CallerIdentity = { user, role: role as CallerIdentity['role'] };
    users.set(key!, { trusted: false, caller, frame: encodeCaller(caller) });
  });
  return users;
}

/**
 * The broker's map from client CURVE keys to users (`--client-users FILE`), reloaded on `reload()`
 * (SIGHUP) and when the file changes, like the allowlists (broker/key-allowlist.ts). A reload that
 * fails keeps the map it had and logs why.
 */
export class ClientUsers {
  private users: Map<string, ClientUser>;
  private watcher?: FSWatcher;
  private timer?: NodeJS.Timeout;

  /** Reads the file now; a missing or bad file is an error here (the broker refuses to start). */
  constructor(readonly path: string, private readonly log: Logger) {
    this.users = readClientUsers(path);
  }

  get(publicKey: string): ClientUser | undefined {
    return this.users.get(publicKey);
  }

  /** Watches the file's folder, so a file replaced by rename is seen too. */
  watch(): void {
    if (this.watcher) return;
    const name = basename(this.path);
    this.watcher = watch(dirname(this.path), (_event, file) => {
      if (file !== null && file !== name) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.reload('file changed'), RELOAD_DEBOUNCE_MS);
    });
    this.watcher.on('error', (err) => this.log.warn({ err, path: this.path }, 'client users watch failed; reload with SIGHUP'));
  }

  reload(why: string): void {
    try {
      this.users = readClientUsers(this.path);
    } catch (err) {
      this.log.error({ err, path: this.path }, 'client users not reloaded; keeping the map it had');
      return;
    }
    this.log.info({ path: this.path, why, keys: this.users.size }, 'client users reloaded');
  }

  /** Stops watching; idempotent. */
  close(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
  }
}
