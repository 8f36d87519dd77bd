/**
 * Models moving through the cluster: one definition of each message, used by holders and fetchers.
 *
 * Every process holding a model version offers `models.fetch.<name>.<version>.<sha256>`, where the
 * hash is that of the version's manifest (its files' names, sizes and SHA-256). The broker's
 * `mmi.services` therefore lists the cluster's catalog of versions with the exact bytes each number
 * stands for, and routes a fetch only to a holder of those bytes. The broker stores nothing.
 *
 * `models.fetch.*` request: `[JSON ModelFetchRequest]`; reply: `[JSON ModelFetchReply, bytes?]`.
 */

import type { ZerveClient } from './client.ts';

import { MODELS_FETCH_PREFIX, MODELS_REMOVED_PREFIX } from './services.ts';

// Service names live in shared/services.ts; re-exported for the modules that import it from here.
export { MODELS_FETCH_PREFIX, MODELS_REMOVED_PREFIX };

/** One file of a version folder. */
export interface ModelFileEntry {
  name: string;
  bytes: number;
  sha256: string;
}

/** What a version is: its files, sorted by name. Its SHA-256 (canonical JSON) names the version's content. */
export interface ModelManifest {
  name: string;
  version: string;
  files: ModelFileEntry[];
}

/** A version as the cluster's catalog lists it. */
export interface ModelVersionRef {
  name: string;
  version: string;
  /** SHA-256 of the manifest. */
  hash: string;
}

/** Frame 0 of `models.fetch.*`: without `file`, the manifest; with it, up to `maxBytes` of that file from byte `from`. */
export interface ModelFetchRequest {
  deadlineMs?: number;
  file?: string;
  from?: number;
  maxBytes?: number;
}

/** Frame 0 of the reply; frame 1 holds `bytes` bytes of `file` when a file was asked for. */
export interface ModelFetchReply {
  hash: string;
  manifest?: ModelManifest;
  file?: string;
  from?: number;
  bytes?: number;
}

/** A model with its versions, as a worker announces it in READY (`models`) and `mmi.workers` lists it. */
export interface ServedModelVersions {
  name: string;
  versions: string[];
  latest: string;
}

export function modelFetchService(ref: ModelVersionRef): string {
  return `${MODELS_FETCH_PREFIX}${ref.name}.${ref.version}.${ref.hash}`;
}

/** The version a `models.fetch.*` service names; undefined for anything else. Names hold no dot, versions may. */
export function parseModelFetchService(service: string): ModelVersionRef | undefined {
  if (!service.startsWith(MODELS_FETCH_PREFIX)) return undefined;
  const match = /^([A-Za-z0-9][A-Za-z0-9_-]{0,63})\.([A-Za-z0-9_-][A-Za-z0-9._-]{0,63})\.([0-9a-f]{64})$/.exec(service.slice(MODELS_FETCH_PREFIX.length));
  return match ? { name: match[1]!, version: match[2]!, hash: match[3]! } : undefined;
}

/** A version removed from the cluster for good (`models.removed.<name>.<version>`), whatever content it stood for. */
export interface RemovedVersion {
  name: string;
  version: string;
}

export function modelRemovedService(removed: RemovedVersion): string {
  return `${MODELS_REMOVED_PREFIX}${removed.name}.${removed.version}`;
}

/** The version a `models.removed.*` service names; undefined for anything else. */
export function parseModelRemovedService(service: string): RemovedVersion | undefined {
  if (!service.startsWith(MODELS_REMOVED_PREFIX)) return undefined;
  const match = /^([A-Za-z0-9][A-Za-z0-9_-]{0,63})\.([A-Za-z0-9_-][A-Za-z0-9._-]{0,63})$/.exec(service.slice(MODELS_REMOVED_PREFIX.length));
  return match ? { name: match[1]!, version: match[2]! } : undefined;
}

/** A version in the cluster's catalog, with the number of processes holding it. */
export interface CatalogEntry extends ModelVersionRef {
  holders: number;
}

/** The cluster's model versions, from the broker's `mmi.services`: every `models.fetch.*` some process offers. */
export async function readModelCatalog(client: ZerveClient, timeoutMs?: number): Promise<CatalogEntry[]> {
  return (await readModelState(client, timeoutMs)).catalog;
}

/** The catalog and the tombstones (`models.removed.*`) some process offers, from one `mmi.services`. */
export async function readModelState(client: ZerveClient, timeoutMs?: number): Promise<{ catalog: CatalogEntry[]; removed: (RemovedVersion & { holders: number })[] }> {
  const services = await client.services(timeoutMs === undefined ? {} : { timeoutMs });
  const catalog: CatalogEntry[] = [];
  const removed: (RemovedVersion & { holders: number })[] = [];
  for (const service of services) {
    if (service.workers === 0) continue;
    const ref = parseModelFetchService(service.name);
    if (ref) catalog.push({ ...ref, holders: service.workers });
    const gone = parseModelRemovedService(service.name);
    if (gone) removed.push({ ...gone, holders: service.workers });
  }
  return { catalog, removed };
}

/** Versions of `name` that more than one content claims (a race of two publishers, before it is settled). */
export function conflictingHashes(catalog: readonly ModelVersionRef[], name: string, version: string): string[] {
  return [...new Set(catalog.filter((e) => e.name === name && e.version === version).map((e) => e.hash))].sort();
}
