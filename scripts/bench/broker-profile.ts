/**
 * Profiles the broker on its own: `zerve broker` in a child process (any extra node flags, e.g.
 * `--cpu-prof --cpu-prof-dir=DIR`, via BROKER_NODE_FLAGS), the Guide's C `mdworker`s or a Zerve echo
 * worker behind it, and one MDP/0.1 DEALER client with N requests in flight, as table 3b runs them.
 * Prints requests/s and the broker's CPU per request for each window. Environment: BROKER=c runs the
 * Guide's C broker instead, SHARED=1 gives Zerve one endpoint for both roles, STRACE=FILE writes
 * `strace -c -f` of the broker (of the first worker with STRACE_WORKER=1) per window to FILE.N.
 *
 *   npx tsx scripts/bench/broker-profile.ts [c|echo] [workers] [window,...] [seconds]
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildZguideReference } from '../zguide-reference.ts';
import { CLI_PATH } from '../process-supervisor.ts';
import { CliChild, CHILD_ENV } from './cli-child.ts';
import { EchoLoad } from './echo-load.ts';
import { freePort } from './bench-cluster.ts';
import { processCpuUs } from './process-cpu.ts';
import { guideProgram, startMinimalBroker } from './reference-brokers.ts';

const [kind = 'c', workerCount = '1', windows = '1,1000', seconds = '5'] = process.argv.slice(2);
const build = await buildZguideReference();
if ('missing' in build) throw new Error(build.missing);
const frontend = `tcp://127.0.0.1:${await freePort()}`;
// SHARED=1: one endpoint for clients and workers, as the C broker has.
const backend = process.env.SHARED ? frontend : `tcp://127.0.0.1:${await freePort()}`;
const nodeFlags = (process.env.BROKER_NODE_FLAGS ?? '').split(' ').filter(Boolean);
// BROKER=c runs the Guide's C broker instead (one endpoint for clients and workers), for comparison.
const cBroker = process.env.BROKER === 'c';
// BROKER=minimal runs the least a zeromq.js broker can do (scripts/bench/minimal-broker.ts): zeromq.js's own floor.
const minimal = process.env.BROKER === 'minimal';
const broker = cBroker
  ? guideProgram(build, 'mdbroker', frontend)
  : minimal
    ? await startMinimalBroker(frontend)
    : new CliChild(['broker', '--frontend', frontend, '--backend', backend], CLI_PATH, CHILD_ENV, [process.execPath, ...nodeFlags, '--import', 'tsx', CLI_PATH]);
const workerEndpoint = cBroker || minimal ? frontend : backend;
const workers = Array.from({ length: Number(workerCount) }, () =>
  kind === 'c'
    ? guideProgram(build, 'mdworker', workerEndpoint)
    : new CliChild(['worker', 'echo', '--capacity', '64', '--connect', workerEndpoint]),
);
console.log(`broker pid ${broker.pid}`);
const load = new EchoLoad({ endpoint: frontend, version: 1 });
try {
  await load.waitForEchoWorker();
  for (const window of windows.split(',').map(Number)) {
    await load.pipelined(window, 0, 500);
    // STRACE=FILE counts the broker's system calls (all threads; the first worker's with STRACE_WORKER=1) during the measured run.
    const strace = process.env.STRACE ? spawn('strace', ['-c', '-f', '-o', `${process.env.STRACE}.${window}`, '-p', String(process.env.STRACE_WORKER ? workers[0]!.pid : broker.pid)], { stdio: 'ignore' }) : undefined;
    if (strace) await sleep(1000); // attached to every thread
    // CPU is sampled inside the measured window only: the drain of N requests after it is not counted.
    const ms = Number(seconds) * 1000;
    let cpu = 0;
    const sampling = (async () => {
      await sleep(ms / 4);
      const before = processCpuUs(broker.pid)!;
      await sleep(ms / 2);
      cpu = processCpuUs(broker.pid)! - before;
    })();
    const result = await load.pipelined(window, 0, ms);
    await sampling;
    // The middle half of the window holds about half its replies.
    const cpuPerRequest = cpu / (result.completed / 2);
    if (strace) {
      strace.kill('SIGINT');
      await once(strace, 'exit');
      console.log(`  strace: ${process.env.STRACE}.${window}: ${result.received} requests`);
    }
    console.log(`N=${window}: ${Math.round(result.perSecond)} req/s, broker ${cpuPerRequest.toFixed(1)} us CPU/req, ${result.unexpected} not echoed`);
  }
  const rt = await load.roundTrips(2000, 300);
  console.log(`sync: p50 ${rt.p50Us.toFixed(0)} us, p99 ${rt.p99Us.toFixed(0)} us`);
} finally {
  load.close();
  await Promise.all(workers.map((w) => w.stop()));
  await broker.stop();
}
