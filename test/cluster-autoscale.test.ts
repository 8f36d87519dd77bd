import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ZerveClient } from '../shared/client.ts';
import type { ClusterSnapshot } from '../shared/cluster-view.ts';
import { squeezenetRepository } from './fixtures/webapp-cluster.ts';
import { image } from './fixtures/inference-models.ts';
import { CliProcess, runCli, tempDir } from './helpers/cluster.ts';
import { freePort } from './helpers/free-port.ts';
import { eventually } from './helpers/eventually.ts';
import { scrape } from './helpers/prometheus-scrape.ts';

const TABBY = 'tabby, tabby cat';

describe('zerve up --autoscale 1:4 --autoscale-training 1:2 (worker processes follow the load)', function () {
  this.timeout(180_000);
  let dir: { path: string; remove: () => Promise<void> };
  let up: CliProcess;
  let client: ZerveClient;
  let webUrl: string;
  const kitten = image('kitten.png');

  // One cluster for the story: steady load near the target, then a burst, then idle.
  before(async () => {
    dir = await tempDir('zerve-autoscale-');
    const [frontend, backend] = [`tcp://127.0.0.1:${await freePort()}`, `tcp://127.0.0.1:${await freePort()}`];
    // Short delays for a test; the defaults (5 s up, 2 min down, 10 s look-back) suit a real host.
    up = new CliProcess([
      'up', '--models', await squeezenetRepository(), '--data', join(dir.path, 'data'), '--autoscale-training', '1:2',
      '--frontend', frontend, '--backend', backend, '--http', '0', '--threads', '1',
      '--autoscale', '1:4', '--upscale-delay-ms', '500', '--downscale-delay-ms', '2000', '--look-back-ms', '1000', '--autoscale-interval-ms', '100',
    ]);
    client = new ZerveClient({ broker: frontend, timeoutMs: 120_000, retries: 0 });
    webUrl = await eventually('the web app to listen', async () => /web app at (http:\/\/\S+)/.exec(up.stderr)?.[1], 60_000, 100);
  });
  after(async () => {
    await client?.close();
    await up?.kill('SIGTERM');
    await dir?.remove();
  });

  const inferenceWorkers = async () => (await client.workers()).filter((w) => w.kind === 'inference' && w.draining !== true);
  const decisions = async (direction: string) => (await scrape(new URL('/metrics', webUrl).href)).value('zerve_autoscale_decisions_total', { kind: 'inference', direction });
  const classify = async () => {
    const reply = await client.classify('squeezenet', kitten, { cache: false });
    assert.equal(reply.predictions[0]!.label, TABBY);
  };

  it('keeps one worker under a steady load at the target (2 per unit of capacity)', async () => {
    const [first] = await eventually('the first inference worker', async () => ((await inferenceWorkers()).length === 1 ? inferenceWorkers() : undefined), 60_000, 100);
    // A closed loop of 4 requests on one worker of capacity 2: 2 per unit of capacity, on target.
    let answered = 0;
    const loop = async () => {
      while (answered < 300) {
        await classify();
        answered++;
      }
    };
    await Promise.all([loop(), loop(), loop(), loop()]);
    assert.deepEqual((await inferenceWorkers()).map((w) => w.pid), [first!.pid], 'the same single worker');
    assert.equal(await decisions('up'), 0);
    assert.equal(await decisions('down'), 0);
    // One scrape of the web app's port shows the broker's series too (the broker runs in zerve up's process).
    const metrics = await scrape(new URL('/metrics', webUrl).href);
    assert.ok(metrics.value('zerve_request_total', { service: 'classify.squeezenet', code: 'OK' }) >= 300);
    assert.equal(metrics.value('zerve_workers_desired', { kind: 'inference' }), 1);
    assert.ok(metrics.types.has('zerve_http_request_duration_seconds'));
  });

  it('scales training workers with their own bounds: one process while idle', async () => {
    const training = await eventually('a training worker process', async () => {
      const pids = new Set((await client.workers()).filter((w) => w.kind === 'training').map((w) => w.pid));
      return pids.size > 0 ? pids : undefined;
    }, 60_000, 100);
    assert.equal(training.size, 1);
    const status = await eventually('the cluster page to show both autoscaled kinds', async () => {
      const snapshot = (await (await fetch(new URL('/cluster/snapshot', webUrl))).json()) as ClusterSnapshot;
      return snapshot.autoscale.length === 2 ? snapshot.autoscale : undefined;
    });
    assert.deepEqual(status.map((a) => [a.kind, a.min, a.max, a.desired]), [['inference', 1, 4, 1], ['training', 1, 2, 1]]);
    assert.equal((await scrape(new URL('/metrics', webUrl).href)).value('zerve_workers_desired', { kind: 'training' }), 1);
  });

  it('grows above one worker under a burst of 1,000, shrinks back to 1 by draining, and answers every request', async () => {
    const pids = new Set<number>();
    let most = 0;
    let answered = 0;
    const burst = Promise.all(
      Array.from({ length: 1000 }, async () => {
        await classify();
        answered++;
      }),
    );
    await eventually('a second inference worker to register', async () => {
      const workers = await inferenceWorkers();
      for (const w of workers) pids.add(w.pid!);
      most = Math.max(most, workers.length);
      return most > 1;
    }, 120_000, 100);
    await burst;
    assert.equal(answered, 1000);
    assert.ok((await decisions('up')) >= 1);
    // A trickle during the shrink: requests in flight on workers as they are drained still get answers.
    let trickling = true;
    let trickled = 0;
    const trickle = (async () => {
      while (trickling) {
        await classify();
        trickled++;
      }
    })();
    await eventually('the cluster to shrink back to one worker', async () => (await inferenceWorkers()).length === 1 && (await client.workers()).filter((w) => w.kind === 'inference').length === 1, 120_000, 100);
    trickling = false;
    await trickle;
    assert.ok(trickled > 0);
    assert.ok((await decisions('down')) >= 1);
    // The page polls on its own clock: wait for the poll that saw the shrink.
    const status = await eventually('the cluster page to show the shrink', async () => {
      const snapshot = (await (await fetch(new URL('/cluster/snapshot', webUrl))).json()) as ClusterSnapshot;
      return snapshot.autoscale.find((a) => a.kind === 'inference' && a.desired === 1 && a.decisions.some((d) => d.direction === 'down'));
    });
    const up1 = status.decisions.find((d) => d.direction === 'up')!;
    assert.equal(up1.from, 1);
    assert.ok(up1.to > 1 && up1.to <= 4);
    assert.match(up1.reason, /per unit of capacity/);
    assert.doesNotMatch(up.stderr, /drain timeout/);
  });
});

describe('zerve up --autoscale with bounds that cannot work', function () {
  this.timeout(60_000);

  it('refuses them with BAD_CONFIG and exits, starting no worker', async () => {
    const dir = await tempDir('zerve-autoscale-bad-');
    try {
      for (const [flag, bounds] of [['--autoscale', '3:1'], ['--autoscale-training', '0:2'], ['--autoscale', 'many']]) {
        const ports = [await freePort(), await freePort()];
        const { code, stderr } = await runCli([
          'up', '--models', join(dir.path, 'models'), '--data', join(dir.path, 'data'), '--http', '0',
          '--frontend', `tcp://127.0.0.1:${ports[0]}`, '--backend', `tcp://127.0.0.1:${ports[1]}`, flag!, bounds!,
        ]);
        assert.equal(code, 1, stderr);
        assert.match(stderr, new RegExp(`zerve: BAD_CONFIG: .*MIN:MAX.*${bounds}`));
        assert.doesNotMatch(stderr, /workers ready/);
      }
    } finally {
      await dir.remove();
    }
  });
});
