import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ZerveClient } from '../shared/client.ts';
import { encodeJson } from '../shared/messages.ts';
import { RUNS_LIST, type ExperimentSummary } from '../shared/training.ts';
import { CliProcess, fixtureImage, tempDir } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';
import { freePort } from './helpers/free-port.ts';

describe('zerve up (npm start) on an empty model repository', function () {
  this.timeout(120_000);
  let dir: { path: string; remove: () => Promise<void> };
  let up: CliProcess;
  let client: ZerveClient;

  before(async () => {
    dir = await tempDir('zerve-up-');
    const [frontend, backend] = [`tcp://127.0.0.1:${await freePort()}`, `tcp://127.0.0.1:${await freePort()}`];
    up = new CliProcess(['up', '--models', join(dir.path, 'models'), '--data', join(dir.path, 'data'), '--frontend', frontend, '--backend', backend, '--http', '0']);
    client = new ZerveClient({ broker: frontend, timeoutMs: 10_000 });
  });

  after(async () => {
    await client.close();
    await up.kill('SIGTERM');
    await dir.remove();
  });

  it('trains digits from the built-in mnist as its first job, visibly, then serves it', async () => {
    await eventually('the digits training to end', () => /model digits version 1|training digits failed/.test(up.stderr), 100_000, 100, () => up.stderr);
    assert.match(up.stderr, /training the built-in `digits` model from mnist as the first job/);
    assert.match(up.stderr, /run 1\/1|epoch/i, 'progress was shown');
    const accuracy = Number(/test accuracy (\d\.\d+)/.exec(up.stderr)?.[1]);
    assert.ok(accuracy >= 0.95, `test accuracy ${accuracy}; output:\n${up.stderr.slice(-1500)}`);

    const reply = await client.classify('digits', await readFile(fixtureImage('digit.png')), {}, { timeoutMs: 30_000 });
    assert.equal(reply.predictions[0]!.label, '8');
    const [experiment] = await client.requestJson<ExperimentSummary[]>(RUNS_LIST, [encodeJson({ limit: 5 })]);
    assert.equal(experiment?.modelName, 'digits');
    assert.equal(experiment?.status, 'succeeded');
  });
});
