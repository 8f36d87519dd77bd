/**
 * The model repository on disk:
 *
 * ```
 * <models>/<name>/<version>/model.onnx
 *                          /config.json     (written last: its presence means the version is complete)
 *                          /labels.txt      (optional)
 * ```
 *
 * A writer (`zerve models add`, or anyone copying files by hand) must write `model.onnx` and
 * the labels first and `config.json` last, atomically (write a temporary file, then rename it):
 * a version folder is ready only once `config.json` exists, so a version that is still being
 * copied is never loaded half-written. The repository is polled, not watched: `fs.watch` misses
 * events on network and container file systems. A version with a tombstone (`.removed/`,
 * model-tombstones.ts) is ignored: it was removed from the cluster.
 */
import { EventEmitter } from 'node:events';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { logger as rootLogger, type Logger } from '../logger.ts';
import { DEFAULT_INFERENCE_OPTIONS } from '../config.ts';
import { ZerveError } from '../errors.ts';
import { MODEL_NAME_PATTERN } from '../model-name.ts';
import { MODEL_CONFIG_FILE, MODEL_FILE } from './model-config.ts';
import { ModelTombstones } from './model-tombstones.ts';

/** Valid model names: the one rule of shared/model-name.ts, re-exported for modules that import it from here. */
export { MODEL_NAME_PATTERN };
/** Valid version folder names (the same set a request header's `version` accepts, minus a leading dot). */
export const VERSION_NAME_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;

/** `'squeezenet,digits'` as a set of model names; '' (every model) as undefined. */
export function parseServeList(serve: string): ReadonlySet<string> | undefined {
  const names = serve.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const bad = names.find((n) => !MODEL_NAME_PATTERN.test(n));
  if (bad !== undefined) throw new ZerveError('BAD_CONFIG', `--serve takes model names separated by commas; ${JSON.stringify(bad)} is not one`);
  return names.length === 0 ? undefined : new Set(names);
}

const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

/** Orders version names numeric-aware: '2' < '10', '1.9' < '1.10'. */
export function compareVersions(a: string, b: string): number {
  return collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** One complete version folder. */
export interface VersionEntry {
  model: string;
  version: string;
  /** Absolute path of the version folder. */
  dir: string;
  /** Size and modification time of model.onnx and config.json: changes when the files are replaced. */
  stamp: string;
}

/** One model: its complete versions in ascending order. */
export interface ModelEntry {
  name: string;
  dir: string;
  versions: VersionEntry[];
  /** Highest version, numeric-aware. */
  latest: string;
}

export interface RepositoryChange {
  added: VersionEntry[];
  removed: VersionEntry[];
  /** Same name, different files (replaced in place). */
  changed: VersionEntry[];
  /** The whole repository after the change. */
  models: ReadonlyMap<string, ModelEntry>;
}

export interface ModelRepositoryOptions {
  /** Repository folder. @defaultValue './models' */
  models: string;
  /** Rescan period. @defaultValue 2000 */
  pollIntervalMs: number;
  /** Only these models, comma-separated; '' for all. @defaultValue '' */
  serve: string;
  /** Parent logger. @defaultValue the root logger */
  logger?: Logger;
}

/**
 * Scans the repository folder and rescans it every `pollIntervalMs`, emitting `'change'`
 * (a {@link RepositoryChange}) when versions appear, disappear or are replaced.
 *
 * @example
 * const repository = new ModelRepository({ models: './models' });
 * repository.on('change', (change) => load(change.added));
 * const models = await repository.start();
 */
export class ModelRepository extends EventEmitter {
  readonly options: Required<Omit<ModelRepositoryOptions, 'logger'>>;
  private readonly log: Logger;
  private current: Map<string, ModelEntry> = new Map();
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<Map<string, ModelEntry>> | undefined;
  private closed = false;
  /** Reasons already logged, so a broken folder is reported once rather than every poll. */
  private readonly reported = new Set<string>();
  /** The `serve` filter; undefined serves every model. */
  private readonly served: ReadonlySet<string> | undefined;
  private readonly tombstones: ModelTombstones;

  constructor(options: Partial<ModelRepositoryOptions> = {}) {
    super();
    this.options = {
      models: path.resolve(options.models ?? DEFAULT_INFERENCE_OPTIONS.models),
      pollIntervalMs: options.pollIntervalMs ?? DEFAULT_INFERENCE_OPTIONS.pollIntervalMs,
      serve: options.serve ?? DEFAULT_INFERENCE_OPTIONS.serve,
    };
    this.served = parseServeList(this.options.serve);
    this.tombstones = new ModelTombstones(this.options.models);
    if (!(Number.isFinite(this.options.pollIntervalMs) && this.options.pollIntervalMs >= 10)) {
      throw new ZerveError('BAD_CONFIG', `pollIntervalMs must be at least 10; got ${this.options.pollIntervalMs}`);
    }
    this.log = (options.logger ?? rootLogger).child({ component: 'model-repository', models: this.options.models });
  }

  /** The models found by the last scan. */
  get models(): ReadonlyMap<string, ModelEntry> {
    return this.current;
  }

  /** Scans once, then keeps polling until {@link close}. Resolves with the first scan. */
  async start(): Promise<ReadonlyMap<string, ModelEntry>> {
    const models = await this.refresh();
    this.schedule();
    return models;
  }

  /** Rescans now (a scan already running is shared), emitting `'change'` if anything changed. */
  refresh(): Promise<ReadonlyMap<string, ModelEntry>> {
    this.scanning ??= this.scan()
      .then((models) => {
        this.apply(models);
        return models;
      })
      .finally(() => {
        this.scanning = undefined;
      });
    return this.scanning;
  }

  /** Stops polling; resolves once a scan in progress has ended. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.scanning;
  }

  private schedule(): void {
    if (this.closed) return;
    // setTimeout after each scan rather than setInterval: a slow disk never stacks scans up.
    this.timer = setTimeout(() => {
      if (this.closed) return;
      this.refresh()
        .catch((err: unknown) => this.log.error({ err }, 'repository scan failed'))
        .finally(() => this.schedule());
    }, this.options.pollIntervalMs);
    this.timer.unref();
  }

  private report(key: string, level: 'warn' | 'info', context: Record<string, unknown>, message: string, seen: Set<string>): void {
    seen.add(key);
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.log[level](context, message);
  }

  /** Reads the folder tree; never throws for a missing or unreadable folder (it logs). */
  async scan(): Promise<Map<string, ModelEntry>> {
    const root = this.options.models;
    const seen = new Set<string>();
    const models = new Map<string, ModelEntry>();
    let names: string[];
    try {
      names = (await readdir(root, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
    } catch (err) {
      this.report(`root:${(err as NodeJS.ErrnoException).code}`, 'warn', { err }, 'cannot read the model repository folder; no models', seen);
      names = [];
    }
    for (const name of names.sort()) {
      if (name.startsWith('.') || (this.served && !this.served.has(name))) continue;
      if (!MODEL_NAME_PATTERN.test(name)) {
        this.report(`name:${name}`, 'warn', { folder: name }, `ignoring model folder: the name must match ${MODEL_NAME_PATTERN}`, seen);
        continue;
      }
      const dir = path.join(root, name);
      let folders: string[];
      try {
        folders = (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
      } catch (err) {
        this.report(`model:${name}`, 'warn', { model: name, err }, 'cannot read the model folder; ignored', seen);
        continue;
      }
      const versions: VersionEntry[] = [];
      const removed = await this.tombstones.versionsOf(name);
      for (const version of folders) {
        if (version.startsWith('.') || removed.has(version)) continue;
        const context = { model: name, version };
        if (!VERSION_NAME_PATTERN.test(version)) {
          this.report(`version:${name}/${version}`, 'warn', context, `ignoring version folder: the name must match ${VERSION_NAME_PATTERN}`, seen);
          continue;
        }
        const versionDir = path.join(dir, version);
        const [model, config] = await Promise.all([
          stat(path.join(versionDir, MODEL_FILE)).catch(() => undefined),
          stat(path.join(versionDir, MODEL_CONFIG_FILE)).catch(() => undefined),
        ]);
        if (!config?.isFile()) {
          // Normal while a writer is still copying model.onnx: config.json comes last.
          this.report(`noconfig:${name}/${version}`, 'info', context, `version folder has no ${MODEL_CONFIG_FILE} (yet); ignored until it does`, seen);
          continue;
        }
        if (!model?.isFile()) {
          this.report(`nomodel:${name}/${version}`, 'warn', context, `version folder has ${MODEL_CONFIG_FILE} but no ${MODEL_FILE}; ignored`, seen);
          continue;
        }
        const stamp = `${model.size}:${model.mtimeMs}:${config.size}:${config.mtimeMs}`;
        versions.push({ model: name, version, dir: versionDir, stamp });
      }
      if (versions.length === 0) {
        this.report(`empty:${name}`, 'info', { model: name }, 'model folder has no complete version; ignored', seen);
        continue;
      }
      versions.sort((a, b) => compareVersions(a.version, b.version));
      models.set(name, { name, dir, versions, latest: versions.at(-1)!.version });
    }
    // Forget reasons that no longer apply, so they are logged again if they come back.
    for (const key of this.reported) if (!seen.has(key)) this.reported.delete(key);
    return models;
  }

  private apply(models: Map<string, ModelEntry>): void {
    const before = new Map<string, VersionEntry>();
    const after = new Map<string, VersionEntry>();
    for (const model of this.current.values()) for (const v of model.versions) before.set(`${v.model}/${v.version}`, v);
    for (const model of models.values()) for (const v of model.versions) after.set(`${v.model}/${v.version}`, v);
    const added: VersionEntry[] = [];
    const changed: VersionEntry[] = [];
    const removed: VersionEntry[] = [];
    for (const [key, entry] of after) {
      const old = before.get(key);
      if (!old) added.push(entry);
      else if (old.stamp !== entry.stamp) changed.push(entry);
    }
    for (const [key, entry] of before) if (!after.has(key)) removed.push(entry);
    this.current = models;
    if (added.length + removed.length + changed.length === 0) return;
    this.log.debug(
      { added: added.map((v) => `${v.model}/${v.version}`), removed: removed.map((v) => `${v.model}/${v.version}`) },
      'repository changed',
    );
    const change: RepositoryChange = { added, removed, changed, models };
    this.emit('change', change);
  }
}
