/**
 * The targets measured through several brokers that are all up at once, in alternating rounds:
 * the C broker, the minimal zeromq.js broker and Zerve's, each with one C `mdworker`, and Zerve's with
 * its echo worker. Each round gives every setup a pipelined window of 1000 requests in flight and a run
 * of sync round trips. Measured one setup after another, as the rest of table 3b is, a ratio moves by
 * 10-40% with whatever else the two cores run in that minute; in rounds, each round of a setup is
 * divided by the C broker's round beside it and the median of those ratios is reported. The broker
 * process's CPU per request in the pipelined part is measured the same way (from /proc).
 */
import { freePort } from './bench-cluster.ts';
import { CliChild } from './cli-child.ts';
import { EchoLoad } from './echo-load.ts';
import { median } from './percentile.ts';
import { withProcessCpu } from './process-cpu.ts';
import { guideProgram, startMinimalBroker, type ZguideBuilt } from './reference-brokers.ts';

export type RoundsSetup = 'C mdbroker + 1 C mdworker' | 'minimal zeromq.js broker + 1 C mdworker' | 'Zerve + 1 C mdworker' | 'Zerve + 1 Zerve echo worker';

export interface RoundsRow {
  setup: RoundsSetup;
  /** Requests per second with `window` in flight, each round. */
  perSecond: number[];
  /** The sync round-trip p50 of each round, microseconds. */
  p50Us: number[];
  /** The broker process's CPU (user + system, all threads) per request answered in the pipelined part, each round, microseconds. */
  brokerCpuUsPerRequest: number[];
  /** Medians over rounds of this setup's figure over the C broker's in the same round. */
  perSecondOverC: number;
  p50OverC: number;
  brokerCpuOverC: number;
  /** Replies that were not the echo, over every round. */
  unexpected: number;
}

export interface RoundsOptions {
  rounds: number;
  /** Requests in flight in the pipelined part of a round. */
  window: number;
  pipelinedMs: number;
  /** Round trips per round (after a few unmeasured ones). */
  roundTrips: number;
  progress(message: string): void;
}

/** Starts the four setups, runs their rounds in alternating order (forward, then backward) and stops them. */
export async function alternatingRounds(build: ZguideBuilt, options: RoundsOptions): Promise<RoundsRow[]> {
  const children: CliChild[] = [];
  const setups: { setup: RoundsSetup; load: EchoLoad; brokerPid: number; perSecond: number[]; p50Us: number[]; brokerCpuUsPerRequest: number[]; unexpected: number }[] = [];
  const start = async (setup: RoundsSetup) => {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const backend = `tcp://127.0.0.1:${await freePort()}`;
    if (setup.startsWith('C ')) {
      children.push(guideProgram(build, 'mdbroker', endpoint), guideProgram(build, 'mdworker', endpoint));
    } else if (setup.startsWith('minimal')) {
      children.push(await startMinimalBroker(endpoint), guideProgram(build, 'mdworker', endpoint));
    } else {
      children.push(new CliChild(['broker', '--frontend', endpoint, '--backend', backend]));
      children.push(setup.endsWith('echo worker') ? new CliChild(['worker', 'echo', '--capacity', '64', '--connect', backend]) : guideProgram(build, 'mdworker', backend));
    }
    const load = new EchoLoad({ endpoint, version: 1 });
    // Each setup's first child is its broker.
    const brokerPid = children[children.length - 2]!.pid;
    setups.push({ setup, load, brokerPid, perSecond: [], p50Us: [], brokerCpuUsPerRequest: [], unexpected: 0 });
    await load.waitForEchoWorker();
  };
  try {
    options.progress('reference: alternating rounds: starting four brokers');
    for (const setup of ['C mdbroker + 1 C mdworker', 'minimal zeromq.js broker + 1 C mdworker', 'Zerve + 1 C mdworker', 'Zerve + 1 Zerve echo worker'] as const) {
      await start(setup);
    }
    for (const s of setups) await s.load.pipelined(options.window, 0, options.pipelinedMs / 4); // warm up each path
    for (let round = 0; round < options.rounds; round++) {
      options.progress(`reference: alternating rounds: round ${round + 1} of ${options.rounds}`);
      for (const s of round % 2 === 0 ? setups : [...setups].reverse()) {
        const { result: pipelined, cpuUs } = await withProcessCpu({ broker: s.brokerPid }, () => s.load.pipelined(options.window, 200, options.pipelinedMs));
        s.perSecond.push(pipelined.perSecond);
        s.brokerCpuUsPerRequest.push(cpuUs.broker === undefined || pipelined.received === 0 ? Number.NaN : cpuUs.broker / pipelined.received);
        s.unexpected += pipelined.unexpected;
        s.p50Us.push((await s.load.roundTrips(options.roundTrips, 50)).p50Us);
      }
    }
  } finally {
    for (const s of setups) s.load.close();
    await Promise.all(children.map((c) => c.stop()));
  }
  const c = setups[0]!;
  const overC = (mine: number[], theirs: number[]) => median(mine.map((x, i) => x / theirs[i]!));
  return setups.map(({ setup, perSecond, p50Us, brokerCpuUsPerRequest, unexpected }) => ({
    setup,
    perSecond,
    p50Us,
    brokerCpuUsPerRequest,
    perSecondOverC: overC(perSecond, c.perSecond),
    p50OverC: overC(p50Us, c.p50Us),
    brokerCpuOverC: overC(brokerCpuUsPerRequest, c.brokerCpuUsPerRequest),
    unexpected,
  }));
}
