/**
 * A holder of model versions: offers `models.fetch.<name>.<version>.<hash>` for every complete version
 * in its repository folder (one WorkerConnection of its own, so serving chunks never takes inference
 * or training capacity), and publishes new versions under a number the whole cluster agrees on.
 *
 * Where the truth lives: in the holders. The catalog is the set of `models.fetch.*` services the
 * broker routes (`mmi.services`); the hash in each name pins the bytes a version number stands for.
 * A publisher numbers a new version one past the highest in the catalog and on its own disk, offers
 * it, waits until the broker lists it, then `modelSettleMs` more, and reads the catalog again: if
 * another publisher claimed the same number meanwhile, the lower hash keeps it and the other moves
 * its version to the next number and tries again. Fetchers take a version only once it has stood
 * unchallenged for `modelSettleMs` (model-sync.ts), so two hosts never serve different files under
 * one number.
 *
 * A version published with an idempotency key carries it as its `publish-key` file, so the key is
 * part of the version's content hash. A resend with the same key and the same files finds that hash
 * in the catalog under an existing number and holds that version too instead of numbering a new one.
 *
 * Removal (`retract`) works the same way, through the catalog: a holder keeps a tombstone per removed
 * version in its folder (workers/inference/model-tombstones.ts) and offers
 * `models.removed.<name>.<version>` for each; model sync copies every tombstone it sees and deletes the
 * version, and a removed number is never given out again.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ZerveClient } from '../client.ts';
import { DEFAULT_INFERENCE_OPTIONS, DEFAULT_MODEL_SYNC_OPTIONS, DEFAULT_WORKER_CONNECTION_OPTIONS, type ModelSyncOptions, type WorkerConnectionOptions } from '../config.ts';
import { ZerveError } from '../errors.ts';
import { isIdempotencyKey } from '../idempotency-key.ts';
import { logger as rootLogger, type Logger } from '../logger.ts';
import { MODELS_FETCH_PREFIX, conflictingHashes, modelFetchService, modelRemovedService, parseModelFetchService, readModelState, type ModelFileEntry, type ModelManifest, type ModelVersionRef, type RemovedVersion } from '../models.ts';
import { HOSTNAME } from '../protocol.ts';
import { WorkerConnection } from '../worker-connection.ts';
import { manifestHash, readManifest } from './model-manifest.ts';
import { MODEL_NAME_PATTERN, ModelRepository, VERSION_NAME_PATTERN, compareVersions, type VersionEntry } from './model-repository.ts';
import { ModelTombstones } from './model-tombstones.ts';
import { INCOMING_FOLDER, removeIfEmpty, serveModelChunk } from './model-transfer.ts';
import { addModelVersion, type AddedModelVersion, type AddModelVersionOptions } from './model-writer.ts';

export interface ModelHolderOptions extends ModelSyncOptions, WorkerConnectionOptions {
  /** Repository folder held. @defaultValue './models' */
  models: string;
  /** Rescan period of the folder. @defaultValue 2000 */
  pollIntervalMs: number;
}

interface Held extends ModelVersionRef {
  dir: string;
  manifest: ModelManifest;
  stamp?: string;
}

/** The file of a version that holds its idempotency key. */
export const PUBLISH_KEY_FILE = 'publish-key';

/** A new version: `addModelVersion`'s options, and an idempotency key. */
export interface PublishOptions extends Omit<AddModelVersionOptions, 'models'> {
  /**
   * Idempotency key (shared/idempotency-key.ts): a version of `name` published before with this key and
   * the same files is answered instead of a new one. @defaultValue none: every publish numbers a new version
   */
  key?: string;
}

/** A version validated and written to a staging folder, not numbered yet (`ModelHolder.stage`). */
export interface StagedVersion {
  added: AddedModelVersion;
  files: ModelFileEntry[];
  /** Its idempotency key, written as its `publish-key` file. */
  key?: string;
  /** Removed once the version is claimed. */
  staging: string;
}

/** A version published into the cluster, in this holder's repository at `path`. */
export type PublishedVersion = ModelVersionRef & AddedModelVersion;

/**
 * @example
 * const holder = new ModelHolder({ models: './models', connect: 'tcp://broker:5556', broker: 'tcp://broker:5555' });
 * await holder.start();
 * const { version } = await holder.publish({ name: 'squeezenet', file: 'model.onnx', channels: 'bgr' });
 */
export class ModelHolder {
  readonly options: ModelHolderOptions;
  readonly connection: WorkerConnection;
  /** Claims this holder lost to another publisher's and moved to the next number. */
  renumbered = 0;
  readonly #log: Logger;
  readonly #repository: ModelRepository;
  readonly #held = new Map<string, Held>();
  readonly #tombstones: ModelTombstones;
  /** Removed versions (`name/version`) with a tombstone in this folder, as last read. */
  #removed = new Set<string>();
  #client?: ZerveClient;
  #offered = '';
  #updating: Promise<void> = Promise.resolve();
  #closing?: Promise<void>;

  constructor(options: Partial<ModelHolderOptions> = {}, log: Logger = rootLogger) {
    this.options = {
      ...DEFAULT_WORKER_CONNECTION_OPTIONS,
      ...DEFAULT_MODEL_SYNC_OPTIONS,
      models: DEFAULT_INFERENCE_OPTIONS.models,
      pollIntervalMs: DEFAULT_INFERENCE_OPTIONS.pollIntervalMs,
      ...options,
    };
    this.#log = log.child({ component: 'model-holder', models: path.resolve(this.options.models) });
    this.#repository = new ModelRepository({ models: this.options.models, pollIntervalMs: this.options.pollIntervalMs, logger: this.#log });
    this.#repository.on('change', () => this.#enqueueUpdate());
    this.#tombstones = new ModelTombstones(this.options.models);
    // At least two chunks at once, even for a training worker's holder (capacity 1): two hosts may fetch together.
    this.connection = new WorkerConnection([], (body, ctx) => this.#serve(ctx.service, body), {
      ...this.options,
      capacity: Math.max(2, this.options.capacity),
      // A chunk read changes nothing: the broker may resend it to another holder when this one dies.
      idempotent: (service) => service.startsWith(MODELS_FETCH_PREFIX),
    }, log);
  }

  /** The client to the broker's frontend the catalog is read through (`broker`, else `connect`). */
  get client(): ZerveClient {
    // The whole bag: whatever security options the connection takes reach the client too. Without
    // `broker` it talks to the worker socket, which under CURVE takes CURVE peers only, whatever the
    // client socket's mode (`clientAuth`) is.
    const onWorkerSocket = this.options.broker === '' && this.options.brokerKey !== '';
    this.#client ??= new ZerveClient({
      ...this.options,
      ...(onWorkerSocket ? { clientAuth: 'curve' } : {}),
      broker: this.options.broker || this.options.connect,
      timeoutMs: this.options.modelChunkTimeoutMs,
    });
    return this.#client;
  }

  /** Versions held now. */
  held(): ModelVersionRef[] {
    return [...this.#held.values()].map(({ name, version, hash }) => ({ name, version, hash }));
  }

  /** The held version of `name`/`version`, if any. */
  get(name: string, version: string): ModelVersionRef | undefined {
    const held = this.#held.get(`${name}/${version}`);
    return held && { name: held.name, version: held.version, hash: held.hash };
  }

  /** Whether this folder has a tombstone for `name`/`version` (it was removed from the cluster). */
  isRemoved(name: string, version: string): boolean {
    return this.#removed.has(`${name}/${version}`);
  }

  /** Scans the folder, then offers what it holds and keeps polling. */
  async start(): Promise<void> {
    await this.#tombstones.sweep();
    await this.#repository.start();
    this.#enqueueUpdate();
    await this.#updating;
    this.connection.start();
  }

  /** Rescans the folder now; resolves once the offered services match it. */
  async refresh(): Promise<void> {
    await this.#repository.refresh();
    this.#enqueueUpdate();
    await this.#updating;
  }

  /**
   * Removes a version from this folder for good: writes its tombstone, deletes its files, and offers
   * the tombstone. Resolves true when the tombstone is new. Model sync calls it for every tombstone it
   * sees in the catalog.
   */
  async remove(removed: RemovedVersion): Promise<boolean> {
    const created = await this.#tombstones.add(removed);
    await this.refresh();
    return created;
  }

  /**
   * The versions of `name` the cluster holds or serves now, in order (only `version`, if given), not
   * counting removed ones.
   *
   * @throws ZerveError BAD_REQUEST for a bad name or version, UNKNOWN_MODEL when there is none
   */
  async versionsOf(name: string, version?: string): Promise<string[]> {
    if (!MODEL_NAME_PATTERN.test(name)) throw new ZerveError('BAD_REQUEST', `model name must match ${MODEL_NAME_PATTERN}; got ${JSON.stringify(name)}`);
    if (version !== undefined && !VERSION_NAME_PATTERN.test(version)) {
      throw new ZerveError('BAD_REQUEST', `version must match ${VERSION_NAME_PATTERN}; got ${JSON.stringify(version)}`);
    }
    const [{ catalog, removed }, workers] = await Promise.all([readModelState(this.client), this.client.workers()]);
    const gone = new Set(removed.filter((r) => r.name === name).map((r) => r.version));
    const found = new Set<string>();
    for (const entry of catalog) if (entry.name === name) found.add(entry.version);
    for (const worker of workers) for (const model of worker.models ?? []) if (model.name === name) for (const v of model.versions) found.add(v);
    const versions = [...found].filter((v) => !gone.has(v) && (version === undefined || v === version)).sort(compareVersions);
    if (versions.length === 0) {
      throw new ZerveError('UNKNOWN_MODEL', version === undefined ? `the cluster has no model ${name}` : `the cluster has no version ${version} of ${name}`, {
        details: { model: name, ...(version === undefined ? {} : { version }) },
      });
    }
    return versions;
  }

  /**
   * Removes versions of `name` from the whole cluster (`zerve models remove`, `DELETE /api/models/...`):
   * offers their tombstones, and resolves once no process holds or serves them any more and another
   * process keeps each tombstone, so this one may exit. Workers finish the requests in flight first.
   *
   * @throws ZerveError NO_WORKERS when that does not happen within `timeoutMs`
   */
  async retract(name: string, versions: readonly string[], timeoutMs = this.options.modelHandoffTimeoutMs): Promise<void> {
    for (const version of versions) await this.#tombstones.add({ name, version });
    await this.refresh();
    const until = performance.now() + timeoutMs;
    for (;;) {
      const [{ catalog, removed }, workers] = await Promise.all([readModelState(this.client), this.client.workers()]);
      const pending = versions.filter(
        (v) =>
          catalog.some((e) => e.name === name && e.version === v) ||
          workers.some((w) => w.models?.some((m) => m.name === name && m.versions.includes(v))) ||
          !removed.some((r) => r.name === name && r.version === v && r.holders >= 2),
      );
      if (pending.length === 0) {
        this.#log.info({ model: name, versions }, 'model versions removed from the cluster');
        return;
      }
      if (performance.now() > until) {
        throw new ZerveError('NO_WORKERS', `${name} version ${pending.join(', ')} is still held or served after ${timeoutMs} ms, or no worker keeps its removal (is every worker syncing models?)`);
      }
      await sleep(100);
    }
  }

  /**
   * Validates and writes a new version like `addModelVersion`, numbered so the cluster agrees, and
   * offers it. Resolves once the number has settled. `stage` then `claim`, in one call.
   */
  async publish(options: PublishOptions): Promise<PublishedVersion> {
    return this.claim(await this.stage(options));
  }

  /**
   * Validates a new version (loads it in onnxruntime) and writes it to this holder's staging folder, not numbered yet.
   *
   * @throws ZerveError BAD_REQUEST for a malformed key, before anything is loaded or written
   */
  async stage(options: PublishOptions): Promise<StagedVersion> {
    const { key, ...version } = options;
    if (key !== undefined && !isIdempotencyKey(key)) throw new ZerveError('BAD_REQUEST', 'the idempotency key must be 1 to 128 printable ASCII characters without spaces');
    const staging = path.join(path.resolve(this.options.models), INCOMING_FOLDER, `add-${randomUUID()}`);
    try {
      const added = await addModelVersion({ ...version, models: staging });
      if (key !== undefined) await writeFile(path.join(added.path, PUBLISH_KEY_FILE), key);
      const { files } = await readManifest(added.path, added.name, added.version);
      return { added, files, staging, ...(key === undefined ? {} : { key }) };
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      await removeIfEmpty(path.dirname(staging));
      throw err;
    }
  }

  /** Numbers a staged version one past the cluster's highest, offers it, and settles the number (see the module comment). */
  async claim(staged: StagedVersion): Promise<PublishedVersion> {
    const { added, files } = staged;
    const root = path.resolve(this.options.models);
    try {
      let dir = added.path;
      let floor = 0;
      let byKey = staged.key !== undefined;
      for (;;) {
        const read = performance.now();
        const { catalog, removed } = await readModelState(this.client);
        // The same key and files make the same hash: published before under that number, so hold that one too
        // (unless a rival still contests the number: that version may yet move).
        const earlier = !byKey
          ? undefined
          : catalog.find((e) => e.name === added.name && manifestHash({ name: e.name, version: e.version, files }) === e.hash && conflictingHashes(catalog, e.name, e.version).length === 1);
        const version = earlier ? earlier.version : String(await this.#nextVersion(added.name, [...catalog, ...removed], floor));
        const target = path.join(root, added.name, version);
        await mkdir(path.dirname(target), { recursive: true });
        try {
          await rename(dir, target);
        } catch (err) {
          if (!['EEXIST', 'ENOTEMPTY'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
          const held = this.#held.get(`${added.name}/${version}`);
          if (earlier && held?.hash === earlier.hash) return { name: held.name, version: held.version, hash: held.hash, path: held.dir, config: added.config };
          // Taken on this disk meanwhile (another writer): try the next number, as a new version.
          byKey = false;
          floor = Math.max(floor, Number(version));
          continue;
        }
        dir = target;
        const manifest: ModelManifest = { name: added.name, version, files };
        const ref: ModelVersionRef = { name: added.name, version, hash: manifestHash(manifest) };
        this.#hold({ ...ref, dir, manifest });
        this.#offer();
        await this.#listed(ref);
        if (earlier) {
          this.#log.info({ model: ref.name, version: ref.version, hash: ref.hash.slice(0, 12) }, 'model version published before under this key; held again');
          return { ...ref, path: dir, config: added.config };
        }
        // The claim took as long as this to reach the broker; wait as long again, at least the settle time.
        const claimMs = performance.now() - read;
        await sleep(Math.max(this.options.modelSettleMs, claimMs));
        const rivals = conflictingHashes((await readModelState(this.client)).catalog, ref.name, ref.version);
        if (rivals.length <= 1 || rivals[0] === ref.hash) {
          this.#log.info({ model: ref.name, version: ref.version, hash: ref.hash.slice(0, 12) }, 'model version published');
          return { ...ref, path: dir, config: added.config };
        }
        this.#log.warn({ model: ref.name, version: ref.version, rivals }, 'another publisher claimed this version number; renumbering');
        this.renumbered++;
        this.#held.delete(`${ref.name}/${ref.version}`);
        floor = Number(version);
      }
    } finally {
      await rm(staged.staging, { recursive: true, force: true });
      await removeIfEmpty(path.dirname(staged.staging));
    }
  }

  /**
   * Resolves once `count` processes other than this one hold `ref` (an inference worker fetched it):
   * a short-lived publisher (`zerve models add`, the web app) may then let go of it.
   */
  async handoff(ref: ModelVersionRef, timeoutMs = this.options.modelHandoffTimeoutMs, count = 1): Promise<number> {
    const service = modelFetchService(ref);
    const until = performance.now() + timeoutMs;
    for (;;) {
      const workers = await this.client.workers();
      const others = workers.filter((w) => w.services.includes(service) && !(w.host === HOSTNAME && w.pid === process.pid)).length;
      if (others >= count) return others;
      if (performance.now() > until) {
        throw new ZerveError('NO_WORKERS', `no inference worker took ${ref.name} version ${ref.version} within ${timeoutMs} ms (is one running with this model in its --serve list?)`);
      }
      await sleep(250);
    }
  }

  /** Stops offering and polling; idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#repository.close();
      await this.#updating;
      await this.connection.close();
      await this.#client?.close();
    })();
    return this.#closing;
  }

  /** One past the highest number in the catalog, among tombstones (a removed number is never reused) and on disk. */
  async #nextVersion(name: string, taken: readonly RemovedVersion[], floor: number): Promise<number> {
    let highest = floor;
    for (const entry of taken) if (entry.name === name && /^\d+$/.test(entry.version)) highest = Math.max(highest, Number(entry.version));
    const local = [...(await readdir(path.join(this.options.models, name)).catch(() => [] as string[])), ...(await this.#tombstones.versionsOf(name))];
    for (const folder of local) {
      if (/^\d+$/.test(folder)) highest = Math.max(highest, Number(folder));
    }
    return highest + 1;
  }

  /** Resolves once the broker lists `ref` (this holder's READY arrived); fails at once when the broker refuses this key. */
  async #listed(ref: ModelVersionRef): Promise<void> {
    const until = performance.now() + this.options.modelChunkTimeoutMs;
    while (!(await this.client.hasService(modelFetchService(ref)))) {
      if (this.connection.refusal) throw this.connection.refusal;
      if (performance.now() > until) {
        throw new ZerveError(
          'NO_WORKERS',
          `the broker did not list ${ref.name} version ${ref.version} in time; this process offers it on ${this.options.connect}, ` +
            "which must take workers (a broker with CURVE takes them only on its worker socket: pass that as --connect)",
        );
      }
      await sleep(50);
    }
  }

  #hold(held: Held): void {
    this.#held.set(`${held.name}/${held.version}`, held);
  }

  #enqueueUpdate(): void {
    this.#updating = this.#updating.then(() => this.#update()).catch((err: unknown) => this.#log.error({ err }, 'cannot read the held model versions'));
  }

  /** Brings the held set in line with the folder as last scanned. */
  async #update(): Promise<void> {
    this.#removed = new Set((await this.#tombstones.list()).map((r) => `${r.name}/${r.version}`));
    for (const key of [...this.#held.keys()]) if (this.#removed.has(key)) this.#held.delete(key);
    const seen = new Set<string>();
    for (const model of this.#repository.models.values()) {
      for (const entry of model.versions) {
        const key = `${entry.model}/${entry.version}`;
        seen.add(key);
        const held = this.#held.get(key);
        if (held && held.stamp === entry.stamp) continue;
        await this.#read(entry);
      }
    }
    for (const key of [...this.#held.keys()]) if (!seen.has(key) && this.#held.get(key)!.stamp !== undefined) this.#held.delete(key);
    this.#offer();
  }

  async #read(entry: VersionEntry): Promise<void> {
    const manifest = await readManifest(entry.dir, entry.model, entry.version);
    this.#hold({ name: entry.model, version: entry.version, hash: manifestHash(manifest), dir: entry.dir, manifest, stamp: entry.stamp });
  }

  #offer(): void {
    const removed = [...this.#removed].map((key) => {
      const slash = key.indexOf('/');
      return modelRemovedService({ name: key.slice(0, slash), version: key.slice(slash + 1) });
    });
    const services = [...[...this.#held.values()].map(modelFetchService), ...removed].sort();
    const key = services.join('\n');
    if (key === this.#offered) return;
    this.#offered = key;
    this.connection.setServices(services);
  }

  async #serve(service: string, body: Buffer[]): Promise<Buffer[]> {
    const ref = parseModelFetchService(service);
    const held = ref && this.#held.get(`${ref.name}/${ref.version}`);
    if (!held || held.hash !== ref.hash) throw new ZerveError('UNKNOWN_MODEL', `this process does not hold ${service}`);
    return serveModelChunk(held.dir, held.hash, held.manifest, body, this.options.modelMaxChunkBytes);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
