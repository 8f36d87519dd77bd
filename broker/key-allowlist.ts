import { EventEmitter } from 'node:events';
import { watch, statSync, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { readAllowlist } from '../shared/curve-keys.ts';
import type { Logger } from '../shared/logger.ts';

const RELOAD_DEBOUNCE_MS = 100;

/**
 * A set of admitted CURVE public keys, read from a file of keys or a folder of `.pub` files and
 * reloaded on `reload()` (the broker calls it on SIGHUP) and when the file or folder changes. A
 * reload that fails (a half-written file) keeps the keys it had and logs why.
 *
 * Events: `'change'` ({ added: string[], removed: string[] }) after a reload that changed the keys.
 */
export class KeyAllowlist extends EventEmitter {
  private keys: Map<string, string>;
  private watcher?: FSWatcher;
  private timer?: NodeJS.Timeout;

  /** Reads the list now; a missing or bad list is an error here (the broker refuses to start). */
  constructor(readonly path: string, private readonly log: Logger) {
    super();
    this.keys = readAllowlist(path);
  }

  get size(): number {
    return this.keys.size;
  }

  has(publicKey: string): boolean {
    return this.keys.has(publicKey);
  }

  /** Watches the list for changes (a file's folder, so a file replaced by rename is seen too). */
  watch(): void {
    if (this.watcher) return;
    const folder = statSync(this.path).isDirectory();
    const target = folder ? this.path : dirname(this.path);
    const name = basename(this.path);
    this.watcher = watch(target, (_event, file) => {
      if (!folder && file !== null && file !== name) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.reload('file changed'), RELOAD_DEBOUNCE_MS);
    });
    this.watcher.on('error', (err) => this.log.warn({ err, path: this.path }, 'allowlist watch failed; reload with SIGHUP'));
  }

  /** Reads the list again; emits `'change'` when keys were added or removed. */
  reload(why: string): void {
    let next: Map<string, string>;
    try {
      next = readAllowlist(this.path);
    } catch (err) {
      this.log.error({ err, path: this.path }, 'allowlist not reloaded; keeping the keys it had');
      return;
    }
    const added = [...next.keys()].filter((k) => !this.keys.has(k));
    const removed = [...this.keys.keys()].filter((k) => !next.has(k));
    this.keys = next;
    this.log.info({ path: this.path, why, keys: next.size, added: added.length, removed: removed.length }, 'allowlist reloaded');
    if (added.length > 0 || removed.length > 0) this.emit('change', { added, removed });
  }

  /** Stops watching; idempotent. */
  close(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
  }
}
