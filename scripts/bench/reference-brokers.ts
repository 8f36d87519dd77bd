/**
 * The processes the broker benchmarks compare Zerve with: the ZeroMQ Guide's C broker and worker
 * (`../shared/reference/zguide-mdp`, built by `buildZguideReference`) and the minimal zeromq.js broker.
 */
import { fileURLToPath } from 'node:url';
import type { ZguideBuild } from '../zguide-reference.ts';
import { CliChild, CHILD_ENV } from './cli-child.ts';

export type ZguideBuilt = Extract<ZguideBuild, { dir: string }>;

const MINIMAL_BROKER = fileURLToPath(new URL('./minimal-broker.ts', import.meta.url));

/** The Guide's C `mdbroker` bound to, or `mdworker` connected to, `endpoint` (both read MDP_ENDPOINT). */
export function guideProgram(build: ZguideBuilt, program: 'mdbroker' | 'mdworker', endpoint: string): CliChild {
  return CliChild.program(build.path(program), [], { ...CHILD_ENV, MDP_ENDPOINT: endpoint });
}

/** `scripts/bench/minimal-broker.ts` on `endpoint`, once it listens. */
export async function startMinimalBroker(endpoint: string): Promise<CliChild> {
  const broker = CliChild.program(process.execPath, ['--import', 'tsx', MINIMAL_BROKER, endpoint]);
  await broker.waitForLine(/minimal broker at/);
  return broker;
}
