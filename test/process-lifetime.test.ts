import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ZerveClient } from '../shared/client.ts';
import type { WorkerInfo } from '../shared/messages.ts';
import { addModelVersion } from '../shared/model-exchange/model-writer.ts';
import { modelFile } from './fixtures/inference-models.ts';
import { CliProcess, startBroker, spawnWorker, tempDir } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}


describe('process lifetime', function () {
  this.timeout(90_000);

  it("stops the workers of a SIGKILLed zerve up instead of leaving them orphaned", async () => {
    const dir = await tempDir('zerve-lifetime-');
    const leftovers: number[] = [];
    let up: CliProcess | undefined;
    let client: ZerveClient | undefined;
    try {
      // A model in the repository, so `up` does not start training the built-in default.
      await addModelVersion({ models: `${dir.path}/models`, name: 'mnist', file: modelFile('mnist'), logits: true });
      up = new CliProcess(['up', '--models', `${dir.path}/models`, '--data', `${dir.path}/data`, '--frontend', 'tcp://127.0.0.1:0', '--backend', 'tcp://127.0.0.1:0', '--http', '0', '--workers', '2', '--training-workers', '1']);
      await eventually('the broker to listen', () => /zerve: broker (tcp:\/\/\S+)/.test(up!.stderr));
      const frontend = /zerve: broker (tcp:\/\/\S+)/.exec(up.stderr)![1]!;
      client = new ZerveClient({ broker: frontend, timeoutMs: 5_000 });
      let workers: WorkerInfo[] = [];
      await eventually('three worker processes to register', async () => {
        workers = (await client!.workers()).filter((w) => w.kind === 'inference' || w.kind === 'training');
        return new Set(workers.map((w) => w.pid)).size === 3;
      });
      const pids = [...new Set(workers.map((w) => w.pid!))];
      leftovers.push(...pids);
      assert.ok(pids.every(alive) && !pids.includes(up.pid));

      await up.kill('SIGKILL');
      await eventually('every worker process to exit', () => pids.every((pid) => !alive(pid)), 20_000);
    } finally {
      await client?.close();
      await up?.kill();
      for (const pid of leftovers) if (alive(pid)) process.kill(pid, 'SIGKILL');
      await dir.remove();
    }
  });

  it('keeps a standalone zerve worker running across a broker restart', async () => {
    let broker = await startBroker();
    const worker = await spawnWorker(broker, ['echo']);
    try {
      const { frontendEndpoint, backendEndpoint } = broker;
      await broker.close();
      await sleep(1_000); // several liveness periods of the test heartbeat without a broker
      assert.ok(alive(worker.pid), 'the worker is still running');
      broker = await startBroker({ frontend: frontendEndpoint, backend: backendEndpoint });
      const client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 10_000 });
      try {
        assert.equal(String((await client.request('echo', [Buffer.from('back')]))[0]), 'back');
      } finally {
        await client.close();
      }
    } finally {
      await worker.kill();
      await broker.close();
    }
  });
});
