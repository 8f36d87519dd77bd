import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { logger } from '../shared/logger.ts';
import { METRICS } from '../shared/metrics.ts';
import { MetricsServer } from '../shared/metrics-server.ts';
import { requestTraining } from '../shared/training.ts';
import { errorCode } from './helpers/error-code.ts';
import { spawnWorker, startBroker, tempDir, type CliProcess } from './helpers/cluster.ts';
import { scrape } from './helpers/prometheus-scrape.ts';

if (process.env.ZERVE_LOG_LEVEL === undefined) logger.level = 'silent';

describe('training metrics through the broker', function () {
  this.timeout(60_000);
  let dir: { path: string; remove: () => Promise<void> };
  let broker: Broker;
  let server: MetricsServer;
  let client: ZerveClient;
  let training: CliProcess;

  beforeEach(async () => {
    dir = await tempDir('zerve-metrics-training-');
    broker = await startBroker();
    server = new MetricsServer({ metricsPort: 0 }, [broker.metrics.registry]);
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 30_000 });
    training = await spawnWorker(broker, ['training', '--data', join(dir.path, 'data'), '--models', join(dir.path, 'models'), '--metrics-interval-ms', '200'], (w) =>
      w.services.includes('train'),
    );
  });

  afterEach(async () => {
    await client.close();
    await training.kill('SIGTERM');
    await server.close();
    await broker.close();
    await dir.remove();
  });

  it('counts a canceled experiment in zerve_training_experiments_total, relayed by the training worker', async () => {
    const controller = new AbortController();
    const run = requestTraining(
      client,
      { datasetId: 'mnist', family: 'mlp', epochs: 50, params: { hidden: 16, patience: 50 } },
      { signal: controller.signal, onProgress: (m) => m.type === 'epoch' && controller.abort() },
    );
    assert.equal(await errorCode(run), 'CANCELED');
    await once(broker.metrics.relay, 'snapshot'); // sent on the socket that answered, so after the increment
    const m = await scrape(await server.start());
    assert.equal(m.value(METRICS.trainingExperiments.name, { state: 'canceled' }), 1);
    assert.equal(m.value(METRICS.trainingExperiments.name, { state: 'succeeded' }), 0);
    assert.equal(m.value(METRICS.requestTotal.name, { service: 'train', code: 'CANCELED' }), 1);
  });
});
