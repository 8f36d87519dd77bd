/**
 * `npm run bench -- failover` (docs/brokers.md): two live brokers against one, with the same kind and
 * number of echo workers and the same client load, all set up at once and measured in alternating
 * rounds; then a SIGKILL of one of the two brokers under load, and what it costs the requests in
 * flight at that moment.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ZerveClient } from '../../shared/client.ts';
import { ZerveError } from '../../shared/errors.ts';
import { ECHO_SERVICE } from '../../shared/protocol.ts';
import { freePort } from './bench-cluster.ts';
import { CliChild } from './cli-child.ts';
import { runLoad } from './load-runner.ts';
import { median, percentile } from './percentile.ts';
import { withProcessCpu } from './process-cpu.ts';
import { Heading, type BenchSection } from './bench-section.ts';
import { ReportTable } from './report-table.ts';
import { each, fixed } from './report-format.ts';

export interface FailoverOptions {
  rounds: number;
  warmUpMs: number;
  durationMs: number;
  /** Requests in flight from the client in every measurement. */
  concurrency: number;
  progress(message: string): void;
}

export interface FailoverSection {
  concurrency: number;
  /** Requests per second of each round. */
  oneBroker: number[];
  twoBrokers: number[];
  /** Median over rounds of two brokers' requests/s over one broker's in the same round. */
  throughputRatio: number;
  /** Brokers' CPU (all of them) per request, microseconds, median over rounds. */
  cpuUsPerRequest: { oneBroker: number; twoBrokers: number; ratio: number };
  kill: KillResult;
}

export interface KillResult {
  /** Requests in flight when broker 1 was SIGKILLed. */
  inFlight: number;
  /** Of those, how many failed (none should), and the first one's error code. */
  lost: number;
  firstError?: string;
  /** Round-trip p50 in the second before the kill. */
  baselineP50Ms: number;
  /** Latency of the requests in flight at the kill, less the baseline p50. */
  addedP50Ms: number;
  addedP99Ms: number;
  addedMaxMs: number;
  /**
   * From the kill until every request in flight at the kill was answered: the resent ones through the
   * other broker, so an upper bound on the time to the first reply through it.
   */
  allAnsweredMs: number;
}

const WORKERS = 2;
const BODY = Buffer.alloc(64, 7);
/** The echo worker declares `echo` idempotent; a client learns it from the caller. */
const ECHO_OPTIONS = { idempotent: true };

/** Starts a broker child on fresh ports. */
async function startBroker(): Promise<{ child: CliChild; frontend: string; backend: string }> {
  const frontend = `tcp://127.0.0.1:${await freePort()}`;
  const backend = `tcp://127.0.0.1:${await freePort()}`;
  return { child: new CliChild(['broker', '--frontend', frontend, '--backend', backend]), frontend, backend };
}

/** Waits until `frontend`'s broker lists `count` echo workers. */
async function echoWorkersOn(frontend: string, count: number): Promise<void> {
  const client = new ZerveClient({ broker: frontend, timeoutMs: 1000 });
  try {
    for (const until = performance.now() + 60_000; performance.now() < until; await sleep(100)) {
      const services = await client.services().catch(() => []);
      if ((services.find((s) => s.name === ECHO_SERVICE)?.workers ?? 0) >= count) return;
    }
    throw new Error(`no ${count} echo workers on ${frontend} within 60 s`);
  } finally {
    await client.close();
  }
}

export async function benchFailover(options: FailoverOptions): Promise<FailoverSection> {
  const children: CliChild[] = [];
  const clients: ZerveClient[] = [];
  try {
    options.progress('failover: starting one broker and two brokers, each with two echo workers');
    const single = await startBroker();
    const pair = [await startBroker(), await startBroker()];
    children.push(single.child, ...pair.map((b) => b.child));
    for (let i = 0; i < WORKERS; i++) {
      children.push(new CliChild(['worker', 'echo', '--capacity', '64', '--connect', single.backend]));
      children.push(new CliChild(['worker', 'echo', '--capacity', '64', '--connect', pair.map((b) => b.backend).join(',')]));
    }
    for (const frontend of [single.frontend, ...pair.map((b) => b.frontend)]) await echoWorkersOn(frontend, WORKERS);
    const one = new ZerveClient({ broker: single.frontend });
    const two = new ZerveClient({ broker: pair.map((b) => b.frontend).join(',') });
    clients.push(one, two);
    // Both of the pair's connections up before measuring.
    for (const until = performance.now() + 10_000; !two.brokers.every((b) => b.up) && performance.now() < until; ) await two.request(ECHO_SERVICE, [BODY], ECHO_OPTIONS);

    const setups = [
      { name: 'one', client: one, pids: { b1: single.child.pid } as Record<string, number>, perSecond: [] as number[], cpuUs: [] as number[] },
      { name: 'two', client: two, pids: { b1: pair[0]!.child.pid, b2: pair[1]!.child.pid } as Record<string, number>, perSecond: [] as number[], cpuUs: [] as number[] },
    ];
    for (let round = 0; round < options.rounds; round++) {
      for (const setup of round % 2 === 0 ? setups : [...setups].reverse()) {
        options.progress(`failover: round ${round + 1}/${options.rounds}, ${setup.name} broker(s)`);
        const { result, cpuUs } = await withProcessCpu(setup.pids, () =>
          runLoad(() => setup.client.request(ECHO_SERVICE, [BODY], ECHO_OPTIONS), { concurrency: options.concurrency, warmUpMs: options.warmUpMs, durationMs: options.durationMs }),
        );
        setup.perSecond.push(result.perSecond);
        const spent = Object.values(cpuUs).reduce<number>((sum, us) => sum + (us ?? Number.NaN), 0);
        // CPU is measured over warm-up and window alike: divide by the requests of both.
        setup.cpuUs.push(spent / (result.completed * (1 + options.warmUpMs / result.durationMs)));
      }
    }
    const [oneSetup, twoSetup] = setups as [(typeof setups)[0], (typeof setups)[0]];
    const ratios = oneSetup.perSecond.map((p, i) => twoSetup.perSecond[i]! / p);
    options.progress('failover: SIGKILL of one of the two brokers under load');
    const kill = await killUnderLoad(two, pair[0]!.child, options.concurrency);
    const cpuOne = median(oneSetup.cpuUs);
    const cpuTwo = median(twoSetup.cpuUs);
    return {
      concurrency: options.concurrency,
      oneBroker: oneSetup.perSecond,
      twoBrokers: twoSetup.perSecond,
      throughputRatio: median(ratios),
      cpuUsPerRequest: { oneBroker: cpuOne, twoBrokers: cpuTwo, ratio: cpuTwo / cpuOne },
      kill,
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(children.map((c) => c.stop()));
  }
}

/** Keeps `concurrency` requests in flight through `client`, SIGKILLs `victim` after a second, runs on for three. */
async function killUnderLoad(client: ZerveClient, victim: CliChild, concurrency: number): Promise<KillResult> {
  interface Sent {
    t0: number;
    t1?: number;
    failed?: string;
  }
  const sent: Sent[] = [];
  let running = true;
  const loop = async () => {
    while (running) {
      const request: Sent = { t0: performance.now() };
      sent.push(request);
      try {
        await client.request(ECHO_SERVICE, [BODY], ECHO_OPTIONS);
      } catch (err) {
        request.failed = err instanceof ZerveError ? err.code : String(err);
      }
      request.t1 = performance.now();
    }
  };
  const loops = Array.from({ length: concurrency }, loop);
  await sleep(1000);
  const killedAt = performance.now();
  const before = sent.filter((r) => r.t1 !== undefined && r.t0 >= killedAt - 1000).map((r) => r.t1! - r.t0);
  const inFlight = sent.filter((r) => r.t1 === undefined);
  victim.child.kill('SIGKILL');
  await sleep(3000);
  running = false;
  await Promise.all(loops);
  const baselineP50Ms = percentile(before.sort((a, b) => a - b), 0.5);
  const added = inFlight.filter((r) => !r.failed).map((r) => r.t1! - r.t0 - baselineP50Ms).sort((a, b) => a - b);
  const ends = inFlight.map((r) => r.t1!);
  return {
    inFlight: inFlight.length,
    lost: inFlight.filter((r) => r.failed).length,
    ...(inFlight.some((r) => r.failed) ? { firstError: inFlight.find((r) => r.failed)!.failed } : {}),
    baselineP50Ms,
    addedP50Ms: percentile(added, 0.5),
    addedP99Ms: percentile(added, 0.99),
    addedMaxMs: added.at(-1) ?? Number.NaN,
    allAnsweredMs: Math.max(...ends) - killedAt,
  };
}

/** The section's report lines. */
export function failoverReport(section: FailoverSection): string[] {
  const throughput = new ReportTable(['brokers', 'requests/s (each round)', 'median', 'brokers CPU us/request']);
  throughput.push(['1', each(section.oneBroker, 0, ', '), fixed(median(section.oneBroker), 0), fixed(section.cpuUsPerRequest.oneBroker)]);
  throughput.push(['2', each(section.twoBrokers, 0, ', '), fixed(median(section.twoBrokers), 0), fixed(section.cpuUsPerRequest.twoBrokers)]);
  const k = section.kill;
  const kill = new ReportTable(['in flight at the kill', 'lost', 'added p50 ms', 'added p99 ms', 'added max ms', 'all answered ms after the kill']);
  kill.push([k.inFlight, k.firstError ? `${k.lost} (${k.firstError})` : k.lost, k.addedP50Ms.toFixed(1), k.addedP99Ms.toFixed(1), k.addedMaxMs.toFixed(1), k.allAnsweredMs.toFixed(1)]);
  return [
    `Two brokers against one, same echo workers (2, capacity 64) and ${section.concurrency} requests in flight, alternating rounds: ` +
      `throughput ${section.throughputRatio.toFixed(2)}x one broker (median of per-round ratios; goal >= 0.95x), ` +
      `brokers' CPU per request ${section.cpuUsPerRequest.ratio.toFixed(2)}x.`,
    throughput.toText(),
    `SIGKILL of broker 1 of 2 under the same load (baseline round trip p50 ${k.baselineP50Ms.toFixed(1)} ms; goal: added p99 <= 2000 ms, nothing lost):`,
    kill.toText(),
  ];
}

/** Echo requests in flight in the failover runs. */
const FAILOVER_CONCURRENCY = 256;

/** `npm run bench -- failover`: several live brokers. */
export const failoverSection: BenchSection<FailoverSection> = {
  name: 'failover',
  run: (c) => benchFailover({ rounds: c.quick ? 2 : 4, warmUpMs: c.warmUpMs, durationMs: c.durationMs, concurrency: FAILOVER_CONCURRENCY, progress: c.progress }),
  report: (section) => [new Heading('Failover: several live brokers (docs/brokers.md)'), ...failoverReport(section)],
};
