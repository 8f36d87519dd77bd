import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LABELS_FILE, MODEL_CONFIG_FILE, MODEL_FILE, type ModelConfig } from '../../shared/model-exchange/model-config.ts';

/** squeezenet-fp32's preprocessing (see ../shared/README.md): 224x224, BGR, 0..255, NCHW, probabilities. */
const SQUEEZENET_CONFIG: ModelConfig = {
  input: { width: 224, height: 224, resize: 'cover', channels: 'bgr', range: [0, 255], layout: 'NCHW' },
  output: { kind: 'probabilities' },
  labels: LABELS_FILE,
  topk: 5,
};

export interface BenchRepository {
  path: string;
  remove(): Promise<void>;
}

/**
 * A temporary model repository serving one model from the fixtures as version 1. The model and
 * labels are symbolic links to the fixtures (never copies); only config.json is written.
 */
export async function makeBenchRepository(name: string, fixtureDir: string, config: ModelConfig = SQUEEZENET_CONFIG): Promise<BenchRepository> {
  const root = await mkdtemp(path.join(tmpdir(), 'zerve-bench-models-'));
  const version = path.join(root, name, '1');
  await mkdir(version, { recursive: true });
  await symlink(path.join(fixtureDir, MODEL_FILE), path.join(version, MODEL_FILE));
  await symlink(path.join(fixtureDir, LABELS_FILE), path.join(version, LABELS_FILE));
  // Written last: a version is complete once its config exists.
  await writeFile(path.join(version, MODEL_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  return { path: root, remove: () => rm(root, { recursive: true, force: true }) };
}
