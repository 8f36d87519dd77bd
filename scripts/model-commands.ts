/**
 * `zerve models add|list|remove`. Through the cluster by default: `add` validates the file here, then holds
 * the new version (ModelHolder, connected to the broker like a worker) until an inference worker has
 * taken it; `list` reads the cluster's catalog; `remove` offers the versions' tombstones until every
 * worker has dropped them. `--models DIR` works on a local repository instead (offline use).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Table from 'cli-table3';
import { Option, type Command } from 'commander';
import { ZerveClient } from '../shared/client.ts';
import { DEFAULT_CLIENT_OPTIONS, DEFAULT_MODEL_PUBLISHER_OPTIONS, DEFAULT_MODEL_SYNC_OPTIONS, DEFAULT_WORKER_CONNECTION_OPTIONS, resolveOptions } from '../shared/config.ts';
import { readModelCatalog } from '../shared/models.ts';
import { ModelHolder, type PublishOptions } from '../shared/model-exchange/model-holder.ts';
import { isIdempotencyKey } from '../shared/idempotency-key.ts';
import { MODEL_NAME_PATTERN, ModelRepository } from '../shared/model-exchange/model-repository.ts';
import { ModelTombstones } from '../shared/model-exchange/model-tombstones.ts';
import { ZerveError } from '../shared/errors.ts';
import { addModelVersion, type AddModelVersionOptions } from '../shared/model-exchange/model-writer.ts';
import { reportError } from './cli-support.ts';

/** A model with its versions as `zerve models list` shows it. */
export interface ModelListing {
  name: string;
  versions: { version: string; hash?: string; holders?: number; servedBy?: string[] }[];
}

/** The cluster's models: versions from the catalog, and which hosts serve each (from `mmi.workers`). */
export async function clusterModels(client: ZerveClient): Promise<ModelListing[]> {
  const [catalog, workers] = await Promise.all([readModelCatalog(client), client.workers()]);
  const byName = new Map<string, ModelListing>();
  for (const entry of catalog) {
    let model = byName.get(entry.name);
    if (!model) byName.set(entry.name, (model = { name: entry.name, versions: [] }));
    const servedBy = workers
      .filter((w) => w.models?.some((m) => m.name === entry.name && m.versions.includes(entry.version)))
      .map((w) => `${w.host}/${w.pid ?? '?'}`);
    model.versions.push({ version: entry.version, hash: entry.hash, holders: entry.holders, servedBy });
  }
  const sorted = [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const m of sorted) m.versions.sort((a, b) => a.version.localeCompare(b.version, 'en', { numeric: true }));
  return sorted;
}

export function registerModelCommands(program: Command): void {
  const models = program.command('models').description('model versions: added through the cluster, or to a local repository with --models');
  models
    .command('add')
    .description('add an ONNX model as a new version, served by every inference worker of the cluster')
    .argument('<name>', 'model name (served as classify.<name>)')
    .argument('<file>', 'ONNX file')
    .option('--labels <file>', 'labels file, one label per line')
    .addOption(new Option('--channels <order>', 'channel order').choices(['rgb', 'bgr', 'grey']))
    .option('--size <WxH>', 'input size (default: from the model)')
    .addOption(new Option('--range <range>', 'pixel value range').choices(['0-255', '0-1']))
    .option('--mean <a,b,c>', 'per-channel mean subtracted after scaling')
    .option('--std <a,b,c>', 'per-channel standard deviation divided by')
    .option('--logits', 'the model outputs logits (softmax is applied)')
    .option('--idempotency-key <key>', 'a key of your choice: run again with the same key and file, it answers the version added the first time instead of adding another')
    .option('--broker <endpoint>', 'broker frontend endpoint (default: ZERVE_BROKER)')
    .option('--connect <endpoint>', "broker worker endpoint the version is offered on while it is handed over (default: the --broker endpoint; under CURVE: the broker's worker socket)")
    .option('--models <dir>', 'write to this local repository instead of the cluster (offline)')
    .option('--model-handoff-timeout-ms <ms>', 'time to wait for an inference worker to take the version')
    .option('--config <file>', 'JSON config file')
    .action(async (name: string, file: string, flags: Record<string, unknown>) => {
      const { broker: _b, connect: _e, models: dir, config: _c, modelHandoffTimeoutMs: _t, idempotencyKey: key, ...rest } = flags;
      const version = { name, file, ...rest } as Omit<AddModelVersionOptions, 'models'>;
      try {
        if (key !== undefined && !isIdempotencyKey(key)) throw new ZerveError('BAD_REQUEST', '--idempotency-key must be 1 to 128 printable ASCII characters without spaces');
        if (key !== undefined && dir !== undefined) throw new ZerveError('BAD_REQUEST', '--idempotency-key is for adding through the cluster, not to a local repository (--models)');
        if (dir !== undefined) {
          const result = await addModelVersion({ ...version, models: String(dir) });
          process.stdout.write(`added ${result.name} version ${result.version} at ${result.path}\n`);
          return;
        }
        await addThroughCluster({ ...version, ...(key === undefined ? {} : { key }) }, flags);
      } catch (err) {
        reportError(err);
      }
    });
  models
    .command('remove')
    .description('remove a model (every version) or one version from every worker of the cluster, for good; requests in flight finish first')
    .argument('<name>', 'model name')
    .option('--version <version>', 'remove only this version')
    .option('--broker <endpoint>', 'broker frontend endpoint (default: ZERVE_BROKER)')
    .option('--connect <endpoint>', "broker worker endpoint the removal is offered on until the workers have it (default: the --broker endpoint; under CURVE: the broker's worker socket)")
    .option('--models <dir>', 'remove from this local repository instead of the cluster (offline)')
    .option('--model-handoff-timeout-ms <ms>', 'time to wait for every worker to drop the version')
    .option('--config <file>', 'JSON config file')
    .action(async (name: string, flags: Record<string, unknown>) => {
      const version = flags.version === undefined ? undefined : String(flags.version);
      try {
        if (flags.models !== undefined) {
          await removeLocally(String(flags.models), name, version);
          return;
        }
        await removeThroughCluster(name, version, flags);
      } catch (err) {
        reportError(err);
      }
    });
  models
    .command('list')
    .description("the cluster's models and versions, with who holds and serves each (or a local repository's with --models)")
    .option('--broker <endpoint>', 'broker frontend endpoint (default: ZERVE_BROKER)')
    .option('--models <dir>', 'list this local repository instead (offline)')
    .option('--timeout-ms <ms>', 'time to wait for the broker', '5000')
    .option('--json', 'print JSON')
    .action(async (flags: Record<string, unknown>) => {
      const client = new ZerveClient(resolveOptions(DEFAULT_CLIENT_OPTIONS, flags));
      try {
        let list: ModelListing[];
        if (flags.models !== undefined) {
          const repository = new ModelRepository({ models: String(flags.models) });
          list = [...(await repository.scan()).values()].map((m) => ({ name: m.name, versions: m.versions.map((v) => ({ version: v.version })) }));
        } else {
          list = await clusterModels(client);
        }
        if (flags.json) {
          process.stdout.write(JSON.stringify(list, null, 2) + '\n');
          return;
        }
        const table = new Table({ head: ['model', 'version', 'sha256', 'holders', 'served by'] });
        for (const m of list) {
          for (const v of m.versions) table.push([m.name, v.version, v.hash?.slice(0, 12) ?? '', v.holders ?? '', v.servedBy?.join(', ') ?? '']);
        }
        process.stdout.write(table.toString() + '\n');
      } catch (err) {
        reportError(err);
      } finally {
        await client.close();
      }
    });
}

/** Holds the new version in a temporary repository until an inference worker has fetched it. */
async function addThroughCluster(version: PublishOptions, flags: Record<string, unknown>): Promise<void> {
  const { broker } = resolveOptions(DEFAULT_CLIENT_OPTIONS, flags);
  const sync = resolveOptions(DEFAULT_MODEL_SYNC_OPTIONS, flags);
  const connection = resolveOptions(DEFAULT_WORKER_CONNECTION_OPTIONS, flags);
  // A plain broker on loopback takes workers on either socket, so by default the CLI holds the version on the
  // frontend; where the worker socket alone takes workers (CURVE), --connect names it.
  const connect = resolveOptions(DEFAULT_MODEL_PUBLISHER_OPTIONS, flags).connect || broker;
  const folder = await mkdtemp(join(tmpdir(), 'zerve-models-add-'));
  const holder = new ModelHolder({ ...connection, ...sync, connect, broker, models: folder, kind: 'models-add' });
  try {
    await holder.start();
    const published = await holder.publish(version);
    process.stderr.write(`zerve: ${published.name} version ${published.version} (sha256 ${published.hash.slice(0, 12)}) offered; waiting for an inference worker to take it\n`);
    await holder.handoff(published);
    process.stdout.write(`added ${published.name} version ${published.version} to the cluster\n`);
  } finally {
    await holder.close();
    await rm(folder, { recursive: true, force: true });
  }
}

/** Offers the removal of `name` (or one version) until every worker of the cluster has dropped it. */
async function removeThroughCluster(name: string, version: string | undefined, flags: Record<string, unknown>): Promise<void> {
  const { broker } = resolveOptions(DEFAULT_CLIENT_OPTIONS, flags);
  const sync = resolveOptions(DEFAULT_MODEL_SYNC_OPTIONS, flags);
  const connection = resolveOptions(DEFAULT_WORKER_CONNECTION_OPTIONS, flags);
  const connect = resolveOptions(DEFAULT_MODEL_PUBLISHER_OPTIONS, flags).connect || broker;
  const folder = await mkdtemp(join(tmpdir(), 'zerve-models-remove-'));
  const holder = new ModelHolder({ ...connection, ...sync, connect, broker, models: folder, kind: 'models-remove' });
  try {
    await holder.start();
    const versions = await holder.versionsOf(name, version);
    process.stderr.write(`zerve: removing ${name} version ${versions.join(', ')}; waiting for every worker to drop it\n`);
    await holder.retract(name, versions);
    process.stdout.write(`removed ${name} version ${versions.join(', ')} from the cluster\n`);
  } finally {
    await holder.close();
    await rm(folder, { recursive: true, force: true });
  }
}

/** Writes tombstones in a local repository (offline): a worker started on it never serves those versions. */
async function removeLocally(models: string, name: string, version: string | undefined): Promise<void> {
  if (!MODEL_NAME_PATTERN.test(name)) throw new ZerveError('BAD_REQUEST', `model name must match ${MODEL_NAME_PATTERN}; got ${JSON.stringify(name)}`);
  const found = (await new ModelRepository({ models }).scan()).get(name)?.versions.map((v) => v.version) ?? [];
  const versions = found.filter((v) => version === undefined || v === version);
  if (versions.length === 0) throw new ZerveError('UNKNOWN_MODEL', `${models} has no ${version === undefined ? `model ${name}` : `version ${version} of ${name}`}`);
  const tombstones = new ModelTombstones(models);
  for (const v of versions) await tombstones.add({ name, version: v });
  process.stdout.write(`removed ${name} version ${versions.join(', ')} from ${models}\n`);
}
