import { BenchCluster } from './bench-cluster.ts';
import { ZerveClient } from '../../shared/client.ts';
import { runLoad } from './load-runner.ts';
const cluster = await BenchCluster.start();
await cluster.addWorkers(['echo', '--capacity', '64'], 1, 'echo');
const client = new ZerveClient({ broker: cluster.frontend });
const payload = Buffer.alloc(64, 0x61);
for (const c of [1, 16]) {
  const r = await runLoad(() => client.request('echo', [payload]), { concurrency: c, warmUpMs: 500, durationMs: Number(process.env.D ?? 3000) });
  console.log('client conc', c, r.perSecond.toFixed(0), 'p50 us', (r.p50Ms * 1000).toFixed(0));
}
await client.close();
await cluster.close();
