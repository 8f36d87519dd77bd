import { EventEmitter } from 'node:events';
import path from 'node:path';
import { DEFAULT_INFERENCE_OPTIONS, type InferenceOptions } from '../../shared/config.ts';
import { throwIfAborted } from '../../shared/abort.ts';
import { ZerveError } from '../../shared/errors.ts';
import { logger as rootLogger, type Logger } from '../../shared/logger.ts';
import type { ClassifyReply, RequestHeader } from '../../shared/messages.ts';
import { classifyService } from '../../shared/protocol.ts';
import { ImageDecoder } from './image-decoder.ts';
import { MAX_TOPK, MODEL_FILE, readLabels, readModelConfig, type ChannelOrder, type OutputKind, type TensorLayout } from '../../shared/model-exchange/model-config.ts';
import { ModelRepository, compareVersions, type ModelEntry, type VersionEntry } from '../../shared/model-exchange/model-repository.ts';
import { ModelSession, type TensorType } from '../../shared/model-exchange/model-session.ts';
import { ResultCache, type ResultCacheStats } from './result-cache.ts';

/** A servable model as `models()` describes it (for `/api/info` and `zerve models`). */
export interface ModelInfo {
  name: string;
  /** Version that serves requests that name none. */
  latest: string;
  /** Every complete version on disk, ascending. */
  versions: string[];
  /** Versions with a session in memory. */
  loaded: string[];
  input: {
    name: string;
    type: TensorType;
    /** Shape fed to the model, batch 1. */
    shape: number[];
    width: number;
    height: number;
    channels: ChannelOrder;
    layout: TensorLayout;
  };
  output: { name: string; type: TensorType; kind: OutputKind; classes: number };
  /** Number of labels; 0 when labels are class indices. */
  labels: number;
  topk: number;
  description?: string;
}

export interface VersionEvent {
  model: string;
  version: string;
}

export interface LatestEvent extends VersionEvent {
  /** The version it replaced, if any. */
  previous?: string;
}

export interface LoadFailedEvent extends VersionEvent {
  error: ZerveError;
}

/** A session plus the requests using it: it is freed once retired and no request holds it. */
class VersionHandle {
  private refs = 0;
  private retired = false;
  private freed: Promise<void> | undefined;
  private resolveDrained!: () => void;
  private readonly drained = new Promise<void>((resolve) => {
    this.resolveDrained = resolve;
  });

  constructor(
    readonly session: ModelSession,
    readonly entry: VersionEntry,
  ) {}

  get version(): string {
    return this.entry.version;
  }

  get inUse(): number {
    return this.refs;
  }

  /** Takes a reference; false once the session is freed. */
  acquire(): boolean {
    if (this.freed) return false;
    this.refs++;
    return true;
  }

  release(): void {
    this.refs--;
    if (this.retired && this.refs === 0) void this.free();
  }

  /** No new requests; frees the session when the last running request ends. Resolves once freed. */
  retire(): Promise<void> {
    this.retired = true;
    if (this.refs === 0) void this.free();
    return this.drained;
  }

  private free(): Promise<void> {
    this.freed ??= this.session
      .release()
      .catch(() => undefined)
      .finally(() => this.resolveDrained());
    return this.freed;
  }
}

interface ServedModel {
  name: string;
  /** The model as last seen on disk. */
  entry: ModelEntry;
  /** Serves requests that name no version (or name this one). */
  latest: VersionHandle | undefined;
  /** Other versions loaded on demand for requests pinned to them. */
  pinned: Map<string, VersionHandle>;
  loading: Map<string, Promise<VersionHandle>>;
}

/**
 * Everything an inference worker does except talking ZeroMQ: keeps the model repository's models
 * loaded, reloads them when versions appear, and classifies images.
 *
 * Loading policy: `start()` loads and warms the latest version of every model (falling back to the
 * next lower version when the latest does not load). Other versions load lazily on the first
 * request pinned to them (`header.version`) and stay loaded until their folder disappears or the
 * engine closes. When a newer version appears it is loaded and warmed first, then swapped in as
 * latest in one step; requests already running on the previous session finish on it, and that
 * session is freed after the last one.
 *
 * Events: `'services'` (string[]) when the offered services change; `'loaded'` ({@link VersionEvent})
 * when a version's session is loaded and warm; `'latest'` ({@link LatestEvent}) when a version
 * starts serving unpinned requests; `'unloaded'` ({@link VersionEvent}) when a retired session has
 * been freed; `'loadFailed'` ({@link LoadFailedEvent}) when a version cannot load.
 *
 * @example
 * const engine = new InferenceEngine({ models: './models' });
 * engine.on('services', (services) => connection.setServices(services));
 * await engine.start();
 * const reply = await engine.classify('squeezenet', { topk: 3 }, jpegBytes);
 */
export class InferenceEngine extends EventEmitter {
  readonly options: InferenceOptions;
  private readonly log: Logger;
  private readonly repository: ModelRepository;
  private readonly decoder: ImageDecoder;
  private readonly results: ResultCache;
  private readonly served = new Map<string, ServedModel>();
  /** Failed loads by `model/version`, kept until the files change (the stamp). */
  private readonly failures = new Map<string, { stamp: string; error: ZerveError }>();
  private offered: string[] = [];
  private reconciling: Promise<void> = Promise.resolve();
  /** Session loads run one at a time: each uses every intra-op thread. */
  private loads: Promise<unknown> = Promise.resolve();
  private started: Promise<void> | undefined;
  private closed: Promise<void> | undefined;

  constructor(options: Partial<InferenceOptions> = {}) {
    super();
    // Only the engine's own keys: callers often pass a merged bag of several components' options.
    const merged: Record<string, unknown> = { ...DEFAULT_INFERENCE_OPTIONS };
    for (const key of Object.keys(DEFAULT_INFERENCE_OPTIONS) as (keyof InferenceOptions)[]) {
      merged[key] = options[key] ?? DEFAULT_INFERENCE_OPTIONS[key];
    }
    this.options = merged as unknown as InferenceOptions;
    this.options.models = path.resolve(this.options.models);
    if (!Number.isInteger(this.options.threads) || this.options.threads < 1) {
      throw new ZerveError('BAD_CONFIG', `threads must be a positive integer; got ${this.options.threads}`);
    }
    this.log = rootLogger.child({ component: 'inference-engine' });
    this.decoder = new ImageDecoder(this.options);
    this.results = new ResultCache(this.options.resultCacheBytes);
    // A version's answers go with its session (replaced by a new latest version, or removed).
    this.on('unloaded', (event: VersionEvent) => this.results.dropVersion(event.model, event.version));
    this.repository = new ModelRepository({ ...this.options, logger: this.log });
    this.repository.on('change', () => this.enqueueReconcile());
  }

  /** Scans the repository and loads every model's latest version; then polls for changes. */
  start(): Promise<void> {
    this.started ??= (async () => {
      if (this.closed) throw new ZerveError('INTERNAL', 'the inference engine is closed');
      await this.repository.start();
      await this.reconciling;
      this.log.info({ services: this.offered, models: this.options.models }, 'inference engine started');
    })();
    return this.started;
  }

  /** Rescans the repository now instead of at the next poll; resolves once changes are applied. */
  async refresh(): Promise<void> {
    await this.repository.refresh();
    await this.reconciling;
  }

  /** One `classify.<model>` service per servable model, sorted. */
  services(): string[] {
    return [...this.offered];
  }

  /** Describes every servable model. */
  models(): ModelInfo[] {
    const infos: ModelInfo[] = [];
    for (const served of [...this.served.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      const latest = served.latest;
      if (!latest) continue;
      const session = latest.session;
      const spec = session.decodeSpec;
      const info: ModelInfo = {
        name: served.name,
        latest: latest.version,
        versions: served.entry.versions.map((v) => v.version),
        loaded: [latest.version, ...served.pinned.keys()].sort(compareVersions),
        input: {
          name: session.input.name,
          type: session.input.type,
          shape: [...session.inputShape],
          width: spec.width,
          height: spec.height,
          channels: spec.channels,
          layout: spec.layout,
        },
        output: { name: session.output.name, type: session.output.type, kind: session.config.output.kind, classes: session.classes },
        labels: session.labels?.length ?? 0,
        topk: session.config.topk,
      };
      if (session.config.description !== undefined) info.description = session.config.description;
      infos.push(info);
    }
    return infos;
  }

  /**
   * Classifies one image with a model's latest version, or the version `header.version` names.
   * @throws ZerveError UNKNOWN_MODEL (no such model or version, or it cannot load), BAD_IMAGE,
   *   IMAGE_TOO_LARGE, BAD_REQUEST (bad topk), CANCELED (signal aborted), INTERNAL
   */
  async classify(model: string, header: RequestHeader, image: Buffer, signal?: AbortSignal): Promise<ClassifyReply> {
    const started = performance.now();
    if (this.closed) throw new ZerveError('INTERNAL', 'the inference engine is closed');
    throwIfAborted(signal);
    const { topk, version } = header;
    if (topk !== undefined && !(Number.isInteger(topk) && topk >= 1 && topk <= MAX_TOPK)) {
      throw new ZerveError('BAD_REQUEST', `topk must be an integer from 1 to ${MAX_TOPK}`);
    }
    if (version !== undefined && typeof version !== 'string') throw new ZerveError('BAD_REQUEST', 'version must be a string');
    this.decoder.checkBytes(image);
    const handle = await this.acquire(model, version);
    try {
      const session = handle.session;
      const k = topk ?? session.config.topk;
      const hashStarted = performance.now();
      const cacheKey =
        header.cache === false || !this.results.enabled
          ? undefined
          : await this.results.key({ model, version: handle.version, stamp: handle.entry.stamp, topk: k, image });
      const hashMs = performance.now() - hashStarted;
      const hit = cacheKey === undefined ? undefined : this.results.get(cacheKey);
      if (hit) return { model, version: handle.version, predictions: hit, cached: true, timings: { hashMs, totalMs: performance.now() - started } };
      const decoded = await this.decoder.decode(image, session.decodeSpec, signal);
      throwIfAborted(signal);
      const { predictions, inferenceMs } = await session.classify(decoded.data, k);
      if (cacheKey !== undefined) this.results.set(cacheKey, predictions);
      const timings: Record<string, number> = { decodeMs: decoded.decodeMs, inferenceMs };
      if (cacheKey !== undefined) timings.hashMs = hashMs;
      timings.totalMs = performance.now() - started;
      return { model, version: handle.version, predictions, timings };
    } catch (err) {
      if (err instanceof ZerveError) throw err;
      this.log.error({ err, model, version: handle.version }, 'classification failed');
      throw ZerveError.from(err);
    } finally {
      handle.release();
    }
  }

  /** Result cache counters (hits, misses) and size. */
  cacheStats(): ResultCacheStats {
    return this.results.stats();
  }

  /**
   * Runs `work` on the session serving `model` at `version` (latest when undefined; a pinned version
   * is loaded on first use) and holds it until `work` settles: the tensor path (`infer.<model>`).
   * @throws ZerveError UNKNOWN_MODEL, and whatever `work` throws (unknown errors become INTERNAL)
   */
  async withSession<T>(model: string, version: string | undefined, work: (session: ModelSession, versions: string[]) => Promise<T>): Promise<T> {
    if (this.closed) throw new ZerveError('INTERNAL', 'the inference engine is closed');
    const handle = await this.acquire(model, version);
    try {
      return await work(handle.session, this.served.get(model)?.entry.versions.map((v) => v.version) ?? [handle.version]);
    } catch (err) {
      if (err instanceof ZerveError) throw err;
      this.log.error({ err, model, version: handle.version }, 'tensor inference failed');
      throw ZerveError.from(err);
    } finally {
      handle.release();
    }
  }

  /** Decodes one image for `session` exactly as `classify` does (same checks, same preprocessing). */
  async decodeImage(session: ModelSession, image: Buffer, signal?: AbortSignal): Promise<{ data: Float32Array; decodeMs: number }> {
    this.decoder.checkBytes(image);
    return this.decoder.decode(image, session.decodeSpec, signal);
  }

  /** Stops polling, lets running requests finish, then frees every session. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.repository.close();
      await this.started?.catch(() => undefined);
      await this.reconciling;
      await this.loads.catch(() => undefined);
      const retiring: Promise<void>[] = [];
      for (const served of this.served.values()) {
        await Promise.allSettled(served.loading.values());
        if (served.latest) retiring.push(served.latest.retire());
        for (const handle of served.pinned.values()) retiring.push(handle.retire());
        served.latest = undefined;
        served.pinned.clear();
      }
      this.served.clear();
      await Promise.allSettled(retiring);
      this.log.debug('inference engine closed');
    })();
    return this.closed;
  }

  /** Takes a reference on the session that serves `model` at `version` (loading it if pinned and not loaded). */
  private async acquire(model: string, version: string | undefined): Promise<VersionHandle> {
    const served = this.served.get(model);
    const latest = served?.latest;
    if (!served || !latest) {
      throw new ZerveError('UNKNOWN_MODEL', `no model named ${JSON.stringify(model)}`, { details: { model } });
    }
    // Synchronous from lookup to acquire: a concurrent swap cannot free the handle in between.
    if (version === undefined || version === latest.version) {
      latest.acquire();
      return latest;
    }
    const pinned = served.pinned.get(version);
    if (pinned?.acquire()) return pinned;
    const entry = served.entry.versions.find((v) => v.version === version);
    if (!entry) {
      throw new ZerveError(
        'UNKNOWN_MODEL',
        `model ${model} has no version ${JSON.stringify(version)} (versions: ${served.entry.versions.map((v) => v.version).join(', ')})`,
        { details: { model, version } },
      );
    }
    let loading = served.loading.get(version);
    if (!loading) {
      loading = this.load(entry).finally(() => served.loading.delete(version));
      served.loading.set(version, loading);
      void loading.then(
        (handle) => {
          const current = served.entry.versions.find((v) => v.version === version);
          if (this.closed || this.served.get(model) !== served || current?.stamp !== entry.stamp) {
            void handle.retire();
            return;
          }
          served.pinned.set(version, handle);
        },
        () => undefined,
      );
    }
    let handle: VersionHandle;
    try {
      handle = await loading;
    } catch (err) {
      throw new ZerveError('UNKNOWN_MODEL', `model ${model} version ${version} cannot be served: ${(err as Error).message}`, {
        cause: err,
        details: { model, version },
      });
    }
    if (!handle.acquire()) {
      throw new ZerveError('UNKNOWN_MODEL', `model ${model} version ${version} was removed`, { details: { model, version } });
    }
    return handle;
  }

  /** Loads and warms one version (queued behind other loads); remembers failures until the files change. */
  private load(entry: VersionEntry): Promise<VersionHandle> {
    const key = `${entry.model}/${entry.version}`;
    const failure = this.failures.get(key);
    if (failure?.stamp === entry.stamp) return Promise.reject(failure.error);
    const run = async (): Promise<VersionHandle> => {
      const log = this.log.child({ model: entry.model, version: entry.version });
      try {
        const config = await readModelConfig(entry.dir);
        const labels = config.labels ? await readLabels(path.join(entry.dir, config.labels)) : undefined;
        const session = await ModelSession.load({
          name: entry.model,
          version: entry.version,
          modelPath: path.join(entry.dir, MODEL_FILE),
          config,
          ...(labels ? { labels } : {}),
          threads: this.options.threads,
          logger: log,
        });
        this.failures.delete(key);
        log.info({ input: session.inputShape, type: session.input.type, loadMs: session.loadMs, warmUpMs: session.warmUpMs }, 'model version loaded');
        this.emit('loaded', { model: entry.model, version: entry.version } satisfies VersionEvent);
        return new VersionHandle(session, entry);
      } catch (err) {
        const error = ZerveError.from(err);
        this.failures.set(key, { stamp: entry.stamp, error });
        log.error({ err: error, dir: entry.dir }, 'model version failed to load; not served');
        this.emit('loadFailed', { model: entry.model, version: entry.version, error } satisfies LoadFailedEvent);
        throw error;
      }
    };
    const result = this.loads.then(run, run);
    this.loads = result.catch(() => undefined);
    return result;
  }

  private enqueueReconcile(): void {
    this.reconciling = this.reconciling
      .then(() => this.reconcile())
      .catch((err: unknown) => this.log.error({ err }, 'applying repository changes failed'));
  }

  /** Brings loaded sessions in line with the repository as last scanned. */
  private async reconcile(): Promise<void> {
    if (this.closed) return;
    const disk = this.repository.models;
    for (const [name, served] of this.served) {
      if (!disk.has(name)) {
        this.retire(served, served.latest);
        for (const handle of served.pinned.values()) this.retire(served, handle);
        this.served.delete(name);
      }
    }
    for (const entry of disk.values()) {
      let served = this.served.get(entry.name);
      if (!served) {
        served = { name: entry.name, entry, latest: undefined, pinned: new Map(), loading: new Map() };
        this.served.set(entry.name, served);
      }
      served.entry = entry;
      const onDisk = new Map(entry.versions.map((v) => [v.version, v]));
      for (const [version, handle] of served.pinned) {
        if (onDisk.get(version)?.stamp !== handle.entry.stamp) {
          served.pinned.delete(version);
          this.retire(served, handle);
        }
      }
      await this.updateLatest(served, onDisk);
      if (this.closed) return;
    }
    this.updateServices();
  }

  /** Loads the highest version that loads, and swaps it in as latest. */
  private async updateLatest(served: ServedModel, onDisk: Map<string, VersionEntry>): Promise<void> {
    const current = served.latest;
    for (const candidate of [...served.entry.versions].reverse()) {
      if (current && candidate.version === current.version && candidate.stamp === current.entry.stamp) return;
      const pinned = served.pinned.get(candidate.version);
      let handle: VersionHandle;
      if (pinned && pinned.entry.stamp === candidate.stamp) {
        served.pinned.delete(candidate.version);
        handle = pinned;
      } else {
        try {
          handle = await this.load(candidate);
        } catch {
          continue; // logged by load(); try the next lower version
        }
      }
      if (this.closed) {
        void handle.retire();
        return;
      }
      served.latest = handle;
      this.log.info({ model: served.name, version: handle.version, previous: current?.version }, 'serving as latest');
      const event: LatestEvent = { model: served.name, version: handle.version };
      if (current) event.previous = current.version;
      this.emit('latest', event);
      this.retire(served, current);
      return;
    }
    // Nothing newer loads: keep the current session if its version is still on disk.
    if (current && !onDisk.has(current.version)) {
      served.latest = undefined;
      this.retire(served, current);
    }
  }

  private retire(served: ServedModel, handle: VersionHandle | undefined): void {
    if (!handle) return;
    const event: VersionEvent = { model: served.name, version: handle.version };
    void handle.retire().then(() => this.emit('unloaded', event));
  }

  private updateServices(): void {
    const services = [...this.served.values()]
      .filter((s) => s.latest)
      .map((s) => classifyService(s.name))
      .sort();
    if (services.length === this.offered.length && services.every((s, i) => s === this.offered[i])) return;
    this.offered = services;
    this.log.info({ services }, 'services changed');
    this.emit('services', services);
  }
}
