/**
 * Model versions moving between processes through the broker (`models.fetch.<name>.<version>.<hash>`,
 * bodies in shared/models.ts): `serveModelChunk` answers for a holder, `ModelFetcher` pulls a version
 * chunk by chunk (shared/chunk-request.ts, as datasets do), checks every file's size and SHA-256
 * against the manifest, whose own hash the service name pins, and only then renames the complete
 * folder into the repository in one step.
 *
 * Chunks are written to `<models>/.incoming/<name>.<version>.<hash>.<pid>.<id>/` (hidden: the
 * repository ignores it; one per fetcher, so processes sharing a folder never write the same files).
 * A holder lost mid-transfer leaves the partial files there and the next attempt (or, after a
 * restart, the next process) resumes from their size, from any holder of the same hash; a corrupt or truncated transfer (BAD_TRANSFER)
 * removes them, so nothing half-written ever reaches the repository.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, mkdir, open, readdir, rename, rm, rmdir, stat, truncate } from 'node:fs/promises';
import path from 'node:path';
import { requestChunk } from '../chunk-request.ts';
import type { ZerveClient } from '../client.ts';
import { DEFAULT_MODEL_SYNC_OPTIONS, type ModelSyncOptions } from '../config.ts';
import { ZerveError } from '../errors.ts';
import { isAlive } from '../process-alive.ts';
import { logger as rootLogger, type Logger } from '../logger.ts';
import { decodeHeader, decodeReply, encodeJson } from '../messages.ts';
import { modelFetchService, type ModelFetchReply, type ModelFetchRequest, type ModelManifest, type ModelVersionRef } from '../models.ts';
import { MODEL_CONFIG_FILE, MODEL_FILE } from './model-config.ts';
import { MANIFEST_FILE_PATTERN, manifestHash } from './model-manifest.ts';
import { MODEL_NAME_PATTERN, VERSION_NAME_PATTERN } from './model-repository.ts';

/** Hidden folder of a repository where transfers and new versions are staged. */
export const INCOMING_FOLDER = '.incoming';

const exists = (file: string) => access(file).then(() => true, () => false);

/** Removes the staging folder once nothing is staged, so a repository holds only its models. */
export async function removeIfEmpty(dir: string): Promise<void> {
  await rmdir(dir).catch(() => undefined);
}

/** Answers one `models.fetch.*` request from a version folder this process holds. */
export async function serveModelChunk(dir: string, hash: string, manifest: ModelManifest, body: Buffer[], maxChunkBytes: number): Promise<Buffer[]> {
  const request = decodeHeader(body[0]) as ModelFetchRequest;
  if (request.file === undefined) return [encodeJson({ hash, manifest } satisfies ModelFetchReply)];
  const entry = manifest.files.find((f) => f.name === request.file);
  if (!entry) throw new ZerveError('BAD_REQUEST', `version ${manifest.name}/${manifest.version} has no file ${JSON.stringify(request.file)}`);
  const from = request.from ?? 0;
  const maxBytes = request.maxBytes ?? maxChunkBytes;
  if (!(Number.isInteger(from) && from >= 0 && from <= entry.bytes) || !(Number.isInteger(maxBytes) && maxBytes > 0)) {
    throw new ZerveError('BAD_REQUEST', `models.fetch needs from (0 to ${entry.bytes}) and maxBytes > 0`);
  }
  const length = Math.min(maxBytes, maxChunkBytes, entry.bytes - from);
  const handle = await open(path.join(dir, entry.name), 'r');
  try {
    const buffer = Buffer.allocUnsafe(length);
    // Whatever is on disk now: a file changed under its manifest shows as a short or wrong chunk, which the receiver refuses.
    const { bytesRead } = await handle.read(buffer, 0, length, from);
    return [encodeJson({ hash, file: entry.name, from, bytes: bytesRead } satisfies ModelFetchReply), buffer.subarray(0, bytesRead)];
  } finally {
    await handle.close();
  }
}

/** Progress of one fetch. */
export interface ModelFetchProgress extends ModelVersionRef {
  bytes: number;
  total: number;
}

/** What one fetch did. */
export interface ModelFetchResult {
  /** The version folder now in the repository. */
  dir: string;
  /** Bytes received by this call. */
  received: number;
  /** Bytes found staged by an earlier, interrupted attempt and kept. */
  resumed: number;
}

function badTransfer(ref: ModelVersionRef, why: string): ZerveError {
  return new ZerveError('BAD_TRANSFER', `${ref.name} version ${ref.version}: ${why}`, { details: { ...ref } });
}

/**
 * Pulls model versions from their holders into a repository.
 *
 * @example
 * const fetcher = new ModelFetcher('./models', client);
 * await fetcher.fetch({ name: 'squeezenet', version: '3', hash });   // in ./models/squeezenet/3, or throws
 */
export class ModelFetcher {
  readonly options: ModelSyncOptions;
  readonly #models: string;
  readonly #client: ZerveClient;
  readonly #log: Logger;
  /** Tells this fetcher's staging folders from those of other fetchers in the same process. */
  readonly #id = randomBytes(4).toString('hex');

  constructor(models: string, client: ZerveClient, options: Partial<ModelSyncOptions> = {}, log: Logger = rootLogger) {
    this.options = { ...DEFAULT_MODEL_SYNC_OPTIONS, ...options };
    const { modelChunkBytes, modelChunkTimeoutMs, modelChunkRetries } = this.options;
    if (!(Number.isInteger(modelChunkBytes) && modelChunkBytes > 0 && modelChunkTimeoutMs > 0 && Number.isInteger(modelChunkRetries) && modelChunkRetries >= 0)) {
      throw new ZerveError('BAD_CONFIG', 'modelChunkBytes and modelChunkTimeoutMs must be positive, modelChunkRetries a non-negative integer');
    }
    this.#models = path.resolve(models);
    this.#client = client;
    this.#log = log.child({ component: 'model-fetcher' });
  }

  /**
   * Fetches one version into `<models>/<name>/<version>`. BAD_TRANSFER when what arrives does not
   * match its hash (staged files removed); TIMEOUT, NO_WORKERS or WORKER_LOST when no holder answers
   * (staged files kept for the next attempt to resume).
   */
  async fetch(ref: ModelVersionRef, onProgress?: (progress: ModelFetchProgress) => void): Promise<ModelFetchResult> {
    if (!MODEL_NAME_PATTERN.test(ref.name) || !VERSION_NAME_PATTERN.test(ref.version) || !/^[0-9a-f]{64}$/.test(ref.hash)) {
      throw new ZerveError('BAD_REQUEST', `not a model version: ${JSON.stringify(ref)}`);
    }
    const log = this.#log.child({ model: ref.name, version: ref.version, hash: ref.hash.slice(0, 12) });
    const dir = path.join(this.#models, ref.name, ref.version);
    // Another process sharing this folder (zerve up --workers N) may have installed it meanwhile.
    if (await exists(dir)) return { dir, received: 0, resumed: 0 };
    const staging = await this.#staging(ref);
    try {
      const manifest = await this.#manifest(ref);
      await mkdir(staging, { recursive: true });
      const total = manifest.files.reduce((n, f) => n + f.bytes, 0);
      let received = 0;
      let resumed = 0;
      let lastReport = performance.now();
      const started = lastReport;
      for (const entry of manifest.files) {
        const file = path.join(staging, entry.name);
        const had = await stat(file).then((s) => s.size, () => 0);
        // A staged file longer than it should be is stale: start it again.
        if (had > entry.bytes) await truncate(file, 0);
        const from0 = had > entry.bytes ? 0 : had;
        resumed += from0;
        const hash = createHash('sha256');
        if (from0 > 0) for await (const chunk of createReadStream(file, { end: from0 - 1 })) hash.update(chunk as Buffer);
        const handle = await open(file, from0 > 0 ? 'a' : 'w');
        try {
          for (let from = from0; from < entry.bytes; ) {
            const data = await this.#chunk(ref, entry.name, from, log);
            if (data.length === 0) throw badTransfer(ref, `${entry.name} ended after ${from} of ${entry.bytes} bytes (truncated)`);
            if (from + data.length > entry.bytes) throw badTransfer(ref, `${entry.name} is longer than its ${entry.bytes} bytes`);
            await handle.write(data);
            hash.update(data);
            from += data.length;
            received += data.length;
            const now = performance.now();
            if (now - lastReport >= 1000) {
              lastReport = now;
              log.info({ bytes: resumed + received, total }, 'fetching model version');
            }
            onProgress?.({ ...ref, bytes: resumed + received, total });
          }
          await handle.datasync();
        } finally {
          await handle.close();
        }
        if (hash.digest('hex') !== entry.sha256) throw badTransfer(ref, `${entry.name} does not match its SHA-256 (corrupt)`);
      }
      await mkdir(path.dirname(dir), { recursive: true });
      // One rename: the version appears complete or not at all.
      const installed = await rename(staging, dir).then(
        () => true,
        async (err: NodeJS.ErrnoException) => {
          // A process sharing this folder installed the same hash first: its copy serves.
          if (await exists(dir)) return false;
          throw new ZerveError('INTERNAL', `cannot install ${ref.name} version ${ref.version} in ${dir}: ${err.message}`, { cause: err });
        },
      );
      if (!installed) await rm(staging, { recursive: true, force: true });
      await removeIfEmpty(path.dirname(staging));
      log.info({ bytes: total, received, resumed, ms: Math.round(performance.now() - started) }, 'model version fetched');
      return { dir, received, resumed };
    } catch (err) {
      const error = ZerveError.from(err);
      if (error.code === 'BAD_TRANSFER' || error.code === 'INTERNAL') {
        await rm(staging, { recursive: true, force: true });
        await removeIfEmpty(path.dirname(staging));
      }
      throw error;
    }
  }

  /**
   * This fetcher's staging folder for `ref`: `<models>/.incoming/<name>.<version>.<hash>.<pid>.<id>`,
   * its own even when processes share the folder, so two never write the same files. The bytes a dead
   * process of this host staged for the same version are taken over (renamed to this one's), so a
   * restarted worker still resumes.
   */
  async #staging(ref: ModelVersionRef): Promise<string> {
    const incoming = path.join(this.#models, INCOMING_FOLDER);
    const base = `${ref.name}.${ref.version}.${ref.hash}`;
    const mine = path.join(incoming, `${base}.${process.pid}.${this.#id}`);
    if (await exists(mine)) return mine;
    for (const name of await readdir(incoming).catch(() => [] as string[])) {
      const owner = name.startsWith(`${base}.`) ? Number(name.slice(base.length + 1).split('.')[0]) : NaN;
      // The bare name is what this version of Zerve staged before folders were shared.
      if (name === base || (Number.isInteger(owner) && owner !== process.pid && !isAlive(owner))) {
        if (await rename(path.join(incoming, name), mine).then(() => true, () => false)) break;
      }
    }
    return mine;
  }

  async #manifest(ref: ModelVersionRef): Promise<ModelManifest> {
    const { modelChunkTimeoutMs } = this.options;
    const [head] = await requestChunk(this.#client, modelFetchService(ref), [encodeJson({ deadlineMs: modelChunkTimeoutMs } satisfies ModelFetchRequest)], this.#chunkOptions(ref, 'manifest'));
    const reply = decodeReply<ModelFetchReply>(head);
    const manifest = reply?.manifest;
    if (!manifest || !Array.isArray(manifest.files) || manifestHash(manifest) !== ref.hash || manifest.name !== ref.name || manifest.version !== ref.version) {
      throw badTransfer(ref, 'the manifest does not match the hash it was offered under');
    }
    const names = new Set(manifest.files.map((f) => f.name));
    const bad = manifest.files.find((f) => !MANIFEST_FILE_PATTERN.test(f.name) || !(Number.isInteger(f.bytes) && f.bytes >= 0) || !/^[0-9a-f]{64}$/.test(f.sha256));
    if (bad || names.size !== manifest.files.length || !names.has(MODEL_FILE) || !names.has(MODEL_CONFIG_FILE)) {
      throw badTransfer(ref, `the manifest must list ${MODEL_FILE} and ${MODEL_CONFIG_FILE}, once each, with plain names, sizes and SHA-256`);
    }
    return manifest;
  }

  async #chunk(ref: ModelVersionRef, file: string, from: number, log: Logger): Promise<Buffer> {
    const { modelChunkTimeoutMs, modelChunkBytes } = this.options;
    const request: ModelFetchRequest = { deadlineMs: modelChunkTimeoutMs, file, from, maxBytes: modelChunkBytes };
    const [head, data] = await requestChunk(this.#client, modelFetchService(ref), [encodeJson(request)], this.#chunkOptions(ref, file, log));
    const reply = decodeReply<ModelFetchReply>(head);
    if (reply?.hash !== ref.hash || reply.file !== file || reply.from !== from || reply.bytes !== (data?.length ?? 0)) {
      throw badTransfer(ref, `malformed chunk of ${file} from byte ${from}`);
    }
    return data ?? Buffer.alloc(0);
  }

  #chunkOptions(ref: ModelVersionRef, what: string, log: Logger = this.#log) {
    return {
      timeoutMs: this.options.modelChunkTimeoutMs,
      retries: this.options.modelChunkRetries,
      onRetry: (attempt: number) => log.warn({ ...ref, what, attempt }, 'model chunk lost with its holder; asking again'),
    };
  }
}
