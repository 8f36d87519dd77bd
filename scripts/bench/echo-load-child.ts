/**
 * One client process of the broker benchmark's multi-client rows: `echo-load-child.ts ENDPOINT
 * VERSION WINDOW WARMUP_MS DURATION_MS`. Connects, checks that `echo` has a worker, prints `ready`,
 * waits for SIGUSR2 (so every client starts together), runs `EchoLoad.pipelined` and prints
 * `result <JSON>`.
 */
import { once } from 'node:events';
import { EchoLoad } from './echo-load.ts';

const [endpoint, version, window, warmUpMs, durationMs] = process.argv.slice(2);
const load = new EchoLoad({ endpoint: endpoint!, version: version === '1' ? 1 : 2 });
// An idle ZeroMQ socket and a signal listener keep no event loop alive; this does, until the end.
const alive = setInterval(() => undefined, 1000);
try {
  const go = once(process, 'SIGUSR2');
  await load.waitForEchoWorker();
  process.stdout.write('ready\n');
  await go;
  const result = await load.pipelined(Number(window), Number(warmUpMs), Number(durationMs));
  process.stdout.write(`result ${JSON.stringify(result)}\n`);
} finally {
  clearInterval(alive);
  load.close();
}
