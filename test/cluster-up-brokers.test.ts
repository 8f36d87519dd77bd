import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { ServiceInfo, WorkerInfo } from '../shared/messages.ts';
import { CliProcess, runCli, tempDir } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';

/** A port pair below the ephemeral range, as test/helpers/cluster.ts picks them; `--brokers 2` adds 2 to each. */
const BASE_PORT = 20_000 + 2 * Math.floor(Math.random() * 5_000);

interface BrokerStatus {
  endpoint: string;
  services?: ServiceInfo[];
  workers?: WorkerInfo[];
  error?: { code: string };
}

describe('zerve up --brokers 2', function () {
  this.timeout(90_000);
  let dir: { path: string; remove: () => Promise<void> };
  let up: CliProcess;
  const frontends = [`tcp://127.0.0.1:${BASE_PORT}`, `tcp://127.0.0.1:${BASE_PORT + 2}`];
  const backend = `tcp://127.0.0.1:${BASE_PORT + 1}`;

  before(async () => {
    dir = await tempDir('zerve-up-brokers-');
    const args = ['up', '--brokers', '2', '--models', join(dir.path, 'models'), '--data', join(dir.path, 'data'), '--training-workers', '0'];
    up = new CliProcess([...args, '--frontend', frontends[0]!, '--backend', backend, '--http', '0']);
  });

  after(async () => {
    await up.kill('SIGTERM');
    await dir.remove();
  });

  it('refuses --brokers 0 with BAD_CONFIG before starting anything', async () => {
    const refused = await runCli(['up', '--brokers', '0', '--models', join(dir.path, 'none'), '--frontend', 'tcp://127.0.0.1:1', '--backend', 'tcp://127.0.0.1:2']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /BAD_CONFIG: --brokers must be at least 1/);
  });

  it('runs two brokers, registers every worker on both, and zerve status shows each broker with its workers', async () => {
    let brokers: BrokerStatus[] = [];
    await eventually(
      'the inference worker and the jobs service on both brokers',
      async () => {
        const status = await runCli(['status', '--broker', frontends.join(','), '--json', '--timeout-ms', '2000']);
        brokers = (JSON.parse(status.stdout) as { brokers: BrokerStatus[] }).brokers;
        return brokers.every((b) => ['inference', 'jobs'].every((kind) => b.workers?.some((w) => w.kind === kind)));
      },
      60_000,
      500,
    );
    assert.deepEqual(brokers.map((b) => b.endpoint), frontends);
    // The same worker process on both, each broker with its share of the capacity.
    const inference = brokers.map((b) => b.workers!.find((w) => w.kind === 'inference')!);
    assert.equal(inference[0]!.pid, inference[1]!.pid);
    assert.equal(inference[0]!.capacity + inference[1]!.capacity, 2, 'its capacity (2) shared out between the brokers');
  });
});
