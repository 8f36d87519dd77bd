/**
 * The backbones a training worker can use: the squeezenet models of its model repository (the
 * layouts `backbone.ts` knows), each at its latest version. With a cluster, the worker also fetches
 * the backbones the cluster serves into that repository (a `ModelSync` limited to `isBackboneName`),
 * and a lookup that finds none waits for that first catch-up before it answers.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MODEL_NAME_PATTERN } from '../../shared/model-name.ts';
import { squeezenetBackbone, type BackboneSpec } from './backbone.ts';

/** Longest a lookup waits for the cluster's backbones to arrive (a fetch of squeezenet takes about a second). */
const CATCH_UP_WAIT_MS = 30_000;

/** Whether a model of this name can be a backbone. */
export function isBackboneName(name: string): boolean {
  return MODEL_NAME_PATTERN.test(name) && name.startsWith('squeezenet');
}

export class BackboneRepository {
  private catchUp?: Promise<void>;

  /**
   * @param caughtUp resolves once the cluster's backbones are in `models` (ModelSync.caughtUp)
   * @param catchUpWaitMs longest a lookup waits for it (once)
   */
  constructor(
    private readonly models: string,
    private readonly caughtUp?: () => Promise<void>,
    private readonly catchUpWaitMs = CATCH_UP_WAIT_MS,
  ) {}

  /** The spec of backbone `name` at its latest version, or undefined when the repository has none. */
  async resolve(name: string): Promise<BackboneSpec | undefined> {
    if (!isBackboneName(name)) return undefined;
    return (await this.local(name)) ?? (await this.afterCatchUp(() => this.local(name)));
  }

  /** The backbone photo datasets default to: a float32 one first (about twice as fast on a CPU), else any. */
  async preferred(): Promise<string | undefined> {
    return (await this.localPreferred()) ?? (await this.afterCatchUp(() => this.localPreferred()));
  }

  private async local(name: string): Promise<BackboneSpec | undefined> {
    const versions = (await readdir(join(this.models, name)).catch(() => [] as string[])).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    if (versions.length === 0) return undefined;
    return { ...squeezenetBackbone(join(this.models, name, versions[0]!, 'model.onnx')), name };
  }

  private async localPreferred(): Promise<string | undefined> {
    const names = (await readdir(this.models).catch(() => [] as string[])).filter(isBackboneName).sort();
    const usable: string[] = [];
    for (const name of names) if (await this.local(name)) usable.push(name);
    return usable.find((n) => n.includes('fp32')) ?? usable[0];
  }

  /** Looks again once the cluster's backbones are in; waits at most once, so a broker that never answers costs one wait. */
  private async afterCatchUp<T>(look: () => Promise<T | undefined>): Promise<T | undefined> {
    if (!this.caughtUp) return undefined;
    this.catchUp ??= Promise.race([this.caughtUp(), sleep(this.catchUpWaitMs, undefined, { ref: false })]);
    await this.catchUp;
    return look();
  }
}
