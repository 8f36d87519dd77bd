/**
 * Datasets moving between training workers through the broker (`datasets.fetch.<id>`, bodies in
 * shared/training.ts). Every training worker offers one fetch service per dataset it holds, so the
 * broker routes a fetch only to a holder, and `mmi.service` tells at once whether any exists.
 *
 * The receiver pulls chunk after chunk (`from`, `maxBytes`), writing each image before asking for the
 * next, so memory stays bounded by one chunk on both ends and the receiver sets the pace (PARTIAL
 * pushes would have no back-pressure). Every image is checked against the manifest before the
 * dataset is renamed into `<data>/datasets/<id>/` (DatasetStore.importFetched).
 */
import { EventEmitter } from 'node:events';
import { requestChunk } from '../../shared/chunk-request.ts';
import { ZerveClient } from '../../shared/client.ts';
import { ZerveError } from '../../shared/errors.ts';
import { logger as rootLogger, type Logger } from '../../shared/logger.ts';
import { decodeHeader, decodeReply, encodeJson } from '../../shared/messages.ts';
import { datasetFetchService, type DatasetFetchReply, type DatasetFetchRequest } from '../../shared/training.ts';
import { MNIST_DATASET_ID } from './builtin-mnist.ts';
import type { DatasetManifest, DatasetStore } from './dataset-store.ts';

export interface DatasetTransferOptions {
  /** Image bytes asked for per chunk (`maxBytes`). @defaultValue 8388608 */
  chunkBytes: number;
  /** Largest chunk this worker serves, whatever a request asks. @defaultValue 33554432 */
  maxChunkBytes: number;
  /** Wait for one chunk; also its broker deadline. @defaultValue 60000 */
  chunkTimeoutMs: number;
  /** Wait for the broker's `mmi.service` answer. @defaultValue 5000 */
  lookupTimeoutMs: number;
  /** Times a chunk lost with its worker (WORKER_LOST) is asked again, maybe of another holder. @defaultValue 1 */
  chunkRetries: number;
  /** Least time between two progress reports (log lines, `onProgress`). @defaultValue 1000 */
  progressIntervalMs: number;
}

export const DEFAULT_DATASET_TRANSFER_OPTIONS: DatasetTransferOptions = {
  chunkBytes: 8 * 1024 * 1024,
  maxChunkBytes: 32 * 1024 * 1024,
  chunkTimeoutMs: 60_000,
  lookupTimeoutMs: 5000,
  chunkRetries: 1,
  progressIntervalMs: 1000,
};

/** Progress of one fetch: images and bytes received so far. */
export interface FetchProgress {
  datasetId: string;
  done: number;
  total: number;
  bytes: number;
}

interface Fetch {
  done: Promise<void>;
  listeners: Set<(progress: FetchProgress) => void>;
}

/**
 * Serves this worker's datasets to others and fetches the ones it lacks, once per process however
 * many requests need them at the same time.
 *
 * @example
 * const transfer = new DatasetTransfer(store, client);
 * if (!(await transfer.available(id))) throw new ZerveError('UNKNOWN_DATASET', id);
 * await transfer.ensure(id, { signal });       // fetched and stored, or already here
 *
 * Events: `'fetched'` (dataset id) once a fetched dataset is stored, even if every waiter gave up.
 */
export class DatasetTransfer extends EventEmitter {
  readonly options: DatasetTransferOptions;
  readonly #store: DatasetStore;
  readonly #client?: ZerveClient;
  readonly #log: Logger;
  readonly #fetches = new Map<string, Fetch>();
  #fetched = 0;
  /** The manifest served last: a receiver asks for many chunks in a row, and big manifests are slow to parse. */
  #served?: DatasetManifest;

  /** Without a client (no `--broker`) a dataset not stored here is UNKNOWN_DATASET. */
  constructor(store: DatasetStore, client: ZerveClient | undefined, options: Partial<DatasetTransferOptions> = {}, log: Logger = rootLogger) {
    super();
    this.options = { ...DEFAULT_DATASET_TRANSFER_OPTIONS, ...options };
    const { chunkBytes, maxChunkBytes, chunkTimeoutMs, lookupTimeoutMs, chunkRetries, progressIntervalMs } = this.options;
    if (!(chunkBytes > 0 && maxChunkBytes > 0 && chunkTimeoutMs > 0 && lookupTimeoutMs > 0 && Number.isInteger(chunkRetries) && chunkRetries >= 0 && progressIntervalMs >= 0)) {
      throw new ZerveError('BAD_CONFIG', 'dataset transfer sizes and timeouts must be positive, chunkRetries a non-negative integer');
    }
    this.#store = store;
    this.#client = client;
    this.#log = log.child({ component: 'dataset-transfer' });
  }

  /** Datasets fetched (and stored) by this process so far. */
  get fetched(): number {
    return this.#fetched;
  }

  /** Whether `id` is here, being fetched, or offered by some worker (`mmi.service`); a quick answer. */
  async available(id: string): Promise<boolean> {
    if (this.#fetches.has(id) || (await this.#store.has(id))) return true;
    if (!this.#client || !/^[0-9a-f]{64}$/.test(id)) return false;
    return this.#client.hasService(datasetFetchService(id), { timeoutMs: this.options.lookupTimeoutMs });
  }

  /**
   * Makes sure `id` is stored here: at once when it is, else fetched from a holder (one fetch per id
   * for all concurrent callers). Resolves true when this call waited for a fetch. UNKNOWN_DATASET when
   * nobody holds it, BAD_DATASET when what arrived does not match its manifest. `signal` stops the
   * wait, not the fetch other callers may share.
   */
  async ensure(id: string, options: { signal?: AbortSignal; onProgress?: (progress: FetchProgress) => void } = {}): Promise<boolean> {
    const { signal, onProgress } = options;
    signal?.throwIfAborted();
    if (id === MNIST_DATASET_ID) return false;
    let fetch = this.#fetches.get(id);
    if (!fetch) {
      if (await this.#store.has(id)) return false;
      // Checked again: another caller may have started while this one read the disk.
      fetch = this.#fetches.get(id);
    }
    if (!fetch) {
      const listeners = new Set<(progress: FetchProgress) => void>();
      const started = { listeners, done: this.#fetch(id, (p) => listeners.forEach((l) => l(p))) };
      this.#fetches.set(id, started);
      void started.done.then(
        () => this.#fetches.delete(id),
        () => this.#fetches.delete(id),
      );
      fetch = started;
    }
    const current = fetch;
    if (onProgress) current.listeners.add(onProgress);
    try {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal!.reason);
        // An abort while the disk was read above fires no event any more.
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        current.done.then(resolve, reject).finally(() => signal?.removeEventListener('abort', onAbort));
      });
    } finally {
      if (onProgress) current.listeners.delete(onProgress);
    }
    return true;
  }

  /** Answers one `datasets.fetch.<id>` request from this worker's store: `[DatasetFetchReply, ...files]`. */
  async serve(id: string, body: Buffer[]): Promise<Buffer[]> {
    const header = decodeHeader(body[0]) as Partial<DatasetFetchRequest>;
    const from = header.from ?? 0;
    const maxBytes = header.maxBytes ?? this.options.chunkBytes;
    if (!(Number.isInteger(from) && from >= 0) || !(typeof maxBytes === 'number' && maxBytes > 0)) {
      throw new ZerveError('BAD_REQUEST', 'datasets.fetch needs {"from"}: a non-negative integer, and maxBytes > 0');
    }
    const manifest = this.#served?.id === id ? this.#served : (this.#served = await this.#store.manifest(id));
    const total = manifest.images.length;
    if (from >= total) throw new ZerveError('BAD_REQUEST', `from ${from} is past the ${total} images of ${id}`);
    const withManifest = from === 0;
    // The manifest shares the reply's budget; at least one image comes whatever is left.
    const budget = Math.min(maxBytes, this.options.maxChunkBytes) - (withManifest ? Buffer.byteLength(JSON.stringify(manifest)) : 0);
    const files = await this.#store.readImages(manifest, from, budget);
    const bytes = files.reduce((n, f) => n + f.length, 0);
    const reply: DatasetFetchReply = { id, total, from, count: files.length, bytes, ...(withManifest ? { manifest } : {}) };
    this.#log.debug({ datasetId: id, from, count: files.length, bytes }, 'dataset chunk served');
    return [encodeJson(reply), ...files];
  }

  async #fetch(id: string, report: (progress: FetchProgress) => void): Promise<void> {
    const client = this.#client;
    if (!client) throw new ZerveError('UNKNOWN_DATASET', `no dataset ${id} here, and no broker to fetch it through`);
    const log = this.#log.child({ datasetId: id });
    const started = performance.now();
    let lastReport = started;
    let bytes = 0;
    let done = 0;
    log.info('fetching dataset');
    const first = await this.#chunk(client, id, 0);
    if (first.reply.manifest === undefined) throw new ZerveError('BAD_DATASET', `the first chunk of ${id} carries no manifest`);
    const total = first.reply.total;
    const { progressIntervalMs } = this.options;
    const next = (from: number) => this.#chunk(client, id, from);
    // Yields the files in manifest order; the store writes each before asking for the next.
    async function* images(): AsyncGenerator<Buffer> {
      let current = first;
      for (;;) {
        if (current.reply.total !== total) throw new ZerveError('BAD_DATASET', `chunks of ${id} disagree on its image count`);
        for (const file of current.files) {
          yield file;
          bytes += file.length;
          done++;
        }
        const now = performance.now();
        if (done >= total || now - lastReport >= progressIntervalMs) {
          lastReport = now;
          report({ datasetId: id, done, total, bytes });
          if (done < total) log.info({ done, total, bytes, ms: Math.round(now - started) }, 'fetching dataset');
        }
        if (done >= total) return;
        current = await next(done);
      }
    }
    await this.#store.importFetched(id, first.reply.manifest, images());
    this.#fetched++;
    this.emit('fetched', id);
    log.info({ images: total, bytes, ms: Math.round(performance.now() - started) }, 'dataset fetched');
  }

  /** One chunk from a holder, checked for shape; WORKER_LOST asked again up to `chunkRetries` times. */
  async #chunk(client: ZerveClient, id: string, from: number): Promise<{ reply: DatasetFetchReply; files: Buffer[] }> {
    const { chunkTimeoutMs, chunkBytes, chunkRetries } = this.options;
    const request: DatasetFetchRequest = { deadlineMs: chunkTimeoutMs, from, maxBytes: chunkBytes };
    try {
      const [head, ...files] = await requestChunk(client, datasetFetchService(id), [encodeJson(request)], {
        timeoutMs: chunkTimeoutMs,
        retries: chunkRetries,
        onRetry: (attempt) => this.#log.warn({ datasetId: id, from, attempt }, 'dataset chunk lost with its worker; asking again'),
      });
      const reply = decodeReply<DatasetFetchReply>(head);
      const ok =
        typeof reply === 'object' && reply !== null && reply.id === id && reply.from === from && reply.count === files.length &&
        files.length > 0 && Number.isInteger(reply.total) && from + files.length <= reply.total;
      if (!ok) throw new ZerveError('BAD_DATASET', `malformed chunk of ${id} from ${from}`, { details: { datasetId: id, from } });
      return { reply, files };
    } catch (err) {
      const error = ZerveError.from(err);
      // A holder gone since the lookup leaves the fetch service with no worker.
      if (error.code === 'NO_WORKERS') throw new ZerveError('UNKNOWN_DATASET', `no worker holds dataset ${id} any more`, { cause: err });
      throw error;
    }
  }
}
