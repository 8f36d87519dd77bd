/**
 * The backbones a training worker can use: the squeezenet models of its model repository (the
 * layouts `backbone.ts` knows), each at its latest version.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { squeezenetBackbone, type BackboneSpec } from './backbone.ts';

const MODEL_NAME = /^[A-Za-z0-9._-]{1,64}$/;

export class BackboneRepository {
  constructor(private readonly models: string) {}

  /** The spec of backbone `name` at its latest version, or undefined when the repository has none. */
  async resolve(name: string): Promise<BackboneSpec | undefined> {
    if (!MODEL_NAME.test(name) || !name.startsWith('squeezenet')) return undefined;
    const versions = (await readdir(join(this.models, name)).catch(() => [] as string[])).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    if (versions.length === 0) return undefined;
    return { ...squeezenetBackbone(join(this.models, name, versions[0], 'model.onnx')), name };
  }

  /** The backbone photo datasets default to: a float32 one first (about twice as fast on a CPU), else any. */
  async preferred(): Promise<string | undefined> {
    const names = (await readdir(this.models).catch(() => [] as string[])).filter((n) => n.startsWith('squeezenet')).sort();
    const usable: string[] = [];
    for (const name of names) if (await this.resolve(name)) usable.push(name);
    return usable.find((n) => n.includes('fp32')) ?? usable[0];
  }
}
