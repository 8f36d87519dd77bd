/**
 * Keeps an inference worker's repository in line with the cluster: every `modelSyncIntervalMs` it
 * reads the catalog (`mmi.services`, shared/models.ts), and fetches each version of a served model
 * that it lacks, once that version has stood unchallenged for `modelSettleMs` (see model-holder.ts
 * for why). Fetches run one at a time; a fetched version is held (offered to others) at once and
 * then loaded by the engine's own rescan. A worker started on an empty folder, or back after being
 * down, catches up the same way.
 *
 * A training worker runs one too, limited (`accept`) to the models it can train on (backbones).
 *
 * Removed versions travel the same way: each pass copies every tombstone the catalog lists
 * (`models.removed.*`) into this repository, which deletes the version here, and never fetches a
 * version with a tombstone (model-holder.ts, docs/models.md).
 *
 * Events: `'fetched'` (ModelVersionRef) after a version is installed; `'failed'` (ModelVersionRef, ZerveError);
 * `'removed'` (RemovedVersion) after a tombstone is taken and its version deleted here.
 */
import { EventEmitter } from 'node:events';
import { DEFAULT_MODEL_SYNC_OPTIONS, type ModelSyncOptions } from '../config.ts';
import { ZerveError } from '../errors.ts';
import { logger as rootLogger, type Logger } from '../logger.ts';
import { readModelState, type CatalogEntry, type ModelVersionRef } from '../models.ts';
import type { ModelHolder } from './model-holder.ts';
import { compareVersions, parseServeList } from './model-repository.ts';
import type { ModelFetcher } from './model-transfer.ts';

const key = (ref: ModelVersionRef) => `${ref.name}/${ref.version}/${ref.hash}`;

export class ModelSync extends EventEmitter {
  readonly options: ModelSyncOptions;
  readonly #holder: ModelHolder;
  readonly #fetcher: ModelFetcher;
  readonly #served: ReadonlySet<string> | undefined;
  readonly #accept: (name: string) => boolean;
  readonly #log: Logger;
  /** When each catalog entry was first seen. */
  readonly #seen = new Map<string, number>();
  /** Entries that failed, with the time before which they are not tried again. */
  readonly #backoff = new Map<string, number>();
  /** Conflicts with the local repository already logged. */
  readonly #reported = new Set<string>();
  #timer?: NodeJS.Timeout;
  #running?: Promise<void>;
  #closed = false;
  /** Time until the next catalog entry seen in the last pass settles: the next pass comes no later. */
  #settling = Infinity;
  #markCaughtUp!: () => void;
  readonly #caughtUp = new Promise<void>((resolve) => (this.#markCaughtUp = resolve));

  /**
   * @param options.serve model names to fetch (comma-separated; default all)
   * @param options.accept fetches only models whose name it accepts (default all)
   */
  constructor(
    holder: ModelHolder,
    fetcher: ModelFetcher,
    options: Partial<ModelSyncOptions> & { serve?: string; accept?: (name: string) => boolean } = {},
    log: Logger = rootLogger,
  ) {
    super();
    this.options = { ...DEFAULT_MODEL_SYNC_OPTIONS, ...options };
    if (!(this.options.modelSyncIntervalMs >= 10 && this.options.modelSettleMs >= 0)) {
      throw new ZerveError('BAD_CONFIG', 'modelSyncIntervalMs must be at least 10, modelSettleMs not negative');
    }
    this.#holder = holder;
    this.#fetcher = fetcher;
    this.#served = parseServeList(options.serve ?? '');
    this.#accept = options.accept ?? (() => true);
    this.#log = log.child({ component: 'model-sync' });
  }

  /** Syncs now, then every `modelSyncIntervalMs` until closed. */
  start(): void {
    this.#schedule(0);
  }

  /** One pass: reads the catalog and fetches what is settled and missing. A pass already running is shared. */
  sync(): Promise<void> {
    this.#running ??= this.#pass().finally(() => (this.#running = undefined));
    return this.#running;
  }

  /**
   * Resolves after the first pass that left nothing to wait for: every version the catalog listed was
   * settled and fetched, or failed to be. Never, while the catalog cannot be read.
   */
  caughtUp(): Promise<void> {
    return this.#caughtUp;
  }

  /** Stops; resolves once a fetch in progress has ended. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running?.catch(() => undefined);
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.sync()
        .catch((err: unknown) => this.#log.warn({ err: ZerveError.from(err).message }, 'cannot read the cluster catalog; trying again'))
        .then(() => this.#schedule(Math.min(this.options.modelSyncIntervalMs, this.#settling)));
    }, ms);
    this.#timer.unref();
  }

  async #pass(): Promise<void> {
    const { catalog, removed } = await readModelState(this.#holder.client, this.options.modelChunkTimeoutMs);
    for (const gone of removed) {
      if (this.#closed) return;
      if (this.#holder.isRemoved(gone.name, gone.version)) continue;
      await this.#holder.remove(gone);
      this.#log.info({ model: gone.name, version: gone.version }, 'model version removed from the cluster; deleted here');
      this.emit('removed', { name: gone.name, version: gone.version });
    }
    const now = performance.now();
    const present = new Set(catalog.map(key));
    for (const k of this.#seen.keys()) if (!present.has(k)) this.#seen.delete(k);
    for (const entry of catalog) if (!this.#seen.has(key(entry))) this.#seen.set(key(entry), now);
    for (const entry of this.#wanted(catalog, now)) {
      if (this.#closed) return;
      try {
        const result = await this.#fetcher.fetch(entry);
        await this.#holder.refresh();
        this.#backoff.delete(key(entry));
        this.#log.info({ model: entry.name, version: entry.version, received: result.received, resumed: result.resumed }, 'model version taken from the cluster');
        this.emit('fetched', { name: entry.name, version: entry.version, hash: entry.hash });
      } catch (err) {
        const error = ZerveError.from(err);
        // A corrupt copy is not asked for again soon; a lost holder is (the staged part is kept).
        const wait = error.code === 'BAD_TRANSFER' ? 10 * this.options.modelSyncIntervalMs : this.options.modelSyncIntervalMs;
        this.#backoff.set(key(entry), performance.now() + wait);
        const level = error.code === 'BAD_TRANSFER' ? 'error' : 'warn';
        this.#log[level]({ model: entry.name, version: entry.version, code: error.code, err: error.message }, 'cannot fetch model version');
        this.emit('failed', entry, error);
      }
    }
    if (this.#settling === Infinity) this.#markCaughtUp();
  }

  /** Settled, unconflicted versions of served models that this repository lacks; latest versions first. */
  #wanted(catalog: readonly CatalogEntry[], now: number): CatalogEntry[] {
    const byNumber = new Map<string, Set<string>>();
    for (const entry of catalog) {
      const k = `${entry.name}/${entry.version}`;
      if (!byNumber.has(k)) byNumber.set(k, new Set());
      byNumber.get(k)!.add(entry.hash);
    }
    const wanted: CatalogEntry[] = [];
    this.#settling = Infinity;
    for (const entry of catalog) {
      if ((this.#served && !this.#served.has(entry.name)) || !this.#accept(entry.name)) continue;
      if (byNumber.get(`${entry.name}/${entry.version}`)!.size > 1) continue; // two claims: not settled yet
      const age = now - this.#seen.get(key(entry))!;
      if (age < this.options.modelSettleMs) {
        this.#settling = Math.min(this.#settling, this.options.modelSettleMs - age + 10);
        continue;
      }
      if ((this.#backoff.get(key(entry)) ?? 0) > now || this.#holder.isRemoved(entry.name, entry.version)) continue;
      const local = this.#holder.get(entry.name, entry.version);
      if (local) {
        if (local.hash !== entry.hash && !this.#reported.has(key(entry))) {
          this.#reported.add(key(entry));
          this.#log.error({ model: entry.name, version: entry.version, local: local.hash, cluster: entry.hash }, 'this repository holds other content under a version number the cluster uses; keeping it');
        }
        continue;
      }
      if (wanted.some((w) => w.name === entry.name && w.version === entry.version)) continue;
      wanted.push(entry);
    }
    return wanted.sort((a, b) => a.name.localeCompare(b.name) || compareVersions(b.version, a.version));
  }
}
