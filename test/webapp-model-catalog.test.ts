import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { ModelCatalog } from '../webapp/model-catalog.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';
import { nextWorker, startBroker } from './helpers/cluster.ts';
import { rejectsWith } from './helpers/error-code.ts';

describe("web app's model catalog", function () {
  this.timeout(30_000);
  let broker: Broker | undefined;
  let worker: WorkerConnection | undefined;
  let client: ZerveClient | undefined;

  afterEach(async () => {
    await client?.close();
    await worker?.close();
    await broker?.close();
  });

  it('lets requests for a model it has seen through while the broker is too busy to list services, and refuses the rest', async () => {
    broker = await startBroker();
    const ready = nextWorker(broker, (w) => w.services.includes('classify.digits'));
    worker = new WorkerConnection(['classify.digits'], async () => [Buffer.from('{}')], { connect: broker.backendEndpoint, kind: 'test' }, testLogger);
    worker.start();
    await ready;
    client = new ZerveClient({ broker: broker.frontendEndpoint, retries: 0 }, testLogger);
    const catalog = new ModelCatalog(client, { infoCacheMs: 0, probeTimeoutMs: 2000 });
    await catalog.requireModel('digits');
    await rejectsWith(catalog.requireModel('cats'), 'UNKNOWN_MODEL');
    // A broker that does not answer: every mmi.services from now on times out.
    await broker.close();
    broker = undefined;
    await catalog.requireModel('digits');
    await rejectsWith(catalog.requireModel('cats'), 'TIMEOUT');
  });
});
