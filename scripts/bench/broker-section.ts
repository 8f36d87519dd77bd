/**
 * `npm run bench -- broker`: what the broker costs against a direct DEALER-ROUTER echo, the client
 * designs (client-section.ts), and the ZeroMQ Guide's C broker (reference-section.ts).
 */
import { fileURLToPath } from 'node:url';
import { ECHO_SERVICE } from '../../shared/protocol.ts';
import { BenchCluster } from './bench-cluster.ts';
import { Heading, type BenchContext, type BenchSection } from './bench-section.ts';
import { CliChild } from './cli-child.ts';
import { benchClients, clientCpuSummary } from './client-section.ts';
import { EchoLoad, type PipelinedResult, type RoundTripResult } from './echo-load.ts';
import type { LoadResult } from './load-runner.ts';
import { withProcessCpu } from './process-cpu.ts';
import { benchReference, referenceReport, type ReferenceSection } from './reference-section.ts';
import { thousands } from './report-format.ts';
import { ReportTable } from './report-table.ts';

const ECHO_WINDOW = 256;
const ECHO_ROUND_TRIPS = 3000;

export interface BrokerSection {
  rows: BrokerRow[];
  reference: ReferenceSection;
}

export interface BrokerRow {
  path: string;
  pipelined?: PipelinedResult | LoadResult;
  roundTrip?: RoundTripResult;
  /** CPU (user + system, all threads) per request of each process during the requests/s run. */
  cpuUsPerRequest?: Record<string, number | undefined>;
  note: string;
}

/** CPU microseconds per request of each process, from their CPU time over a measured run. */
function cpuPerRequest(cpuUs: Record<string, number | undefined>, requests: number): Record<string, number | undefined> {
  return Object.fromEntries(Object.entries(cpuUs).map(([name, us]) => [name, us === undefined || requests === 0 ? undefined : us / requests]));
}

/**
 * Pipelined echo load with `ECHO_WINDOW` in flight: a warm-up run, then a measured one with the CPU
 * each process spent on it.
 */
async function measurePipelined(c: BenchContext, load: EchoLoad, pids: Record<string, number>): Promise<{ pipelined: PipelinedResult; cpu: Record<string, number | undefined> }> {
  await load.pipelined(ECHO_WINDOW, 0, Math.min(c.warmUpMs, 1000));
  const { result, cpuUs } = await withProcessCpu(pids, () => load.pipelined(ECHO_WINDOW, 0, c.durationMs));
  // The CPU covers every reply of the run, the drain after the window too.
  return { pipelined: result, cpu: cpuPerRequest(cpuUs, result.received) };
}

async function benchBroker(c: BenchContext, cluster: BenchCluster): Promise<BrokerRow[]> {
  const rows: BrokerRow[] = [];
  const warmUpMs = Math.min(c.warmUpMs, 1000);

  c.progress('direct DEALER-ROUTER echo: starting the echo server process');
  const server = new CliChild(['tcp://127.0.0.1:*'], fileURLToPath(new URL('./router-echo-server.ts', import.meta.url)));
  try {
    const [, endpoint] = await server.waitForLine(/listening (\S+)/);
    const direct = new EchoLoad({ endpoint: endpoint! });
    try {
      c.progress(`direct echo: pipelined, ${ECHO_WINDOW} in flight`);
      const { pipelined, cpu } = await measurePipelined(c, direct, { client: process.pid, server: server.pid });
      c.progress('direct echo: round trips, one at a time');
      const roundTrip = await direct.roundTrips(ECHO_ROUND_TRIPS, 500);
      rows.push({ path: 'direct: DEALER -> ROUTER echo process', pipelined, roundTrip, cpuUsPerRequest: cpu, note: 'no broker; Node reference ~50,000/s, 130 us' });
    } finally {
      direct.close();
    }
  } finally {
    await server.stop();
  }

  c.progress('broker echo: starting an echo worker process (capacity 64)');
  const workers = await cluster.addWorkers(['echo', '--capacity', '64'], 1, ECHO_SERVICE);
  const pids = { client: process.pid, broker: cluster.broker.pid, worker: workers[0]!.pid };
  try {
    const viaBroker = new EchoLoad({ endpoint: cluster.frontend });
    try {
      c.progress(`broker echo: pipelined, ${ECHO_WINDOW} in flight`);
      const { pipelined, cpu } = await measurePipelined(c, viaBroker, pids);
      c.progress('broker echo: round trips, one at a time');
      const roundTrip = await viaBroker.roundTrips(ECHO_ROUND_TRIPS, 500);
      rows.push({
        path: 'broker: DEALER -> broker -> echo worker (1 worker, capacity 64)',
        pipelined,
        roundTrip,
        cpuUsPerRequest: cpu,
        note: 'targets >= 25,000/s, p50 <= 250 us; the Guide C broker: the next table, same run',
      });
    } finally {
      viaBroker.close();
    }

    rows.push(...(await benchClients({ endpoint: cluster.frontend, pids, warmUpMs, durationMs: c.durationMs, progress: c.progress })));
  } finally {
    await cluster.stopWorkers(workers);
  }
  return rows;
}

function brokerTable(rows: BrokerRow[]): ReportTable {
  const table = new ReportTable(
    ['path', 'requests/s', 'p50 round trip us', 'p99 round trip us', 'CPU us per request', 'reference'],
    ['left', 'right', 'right', 'right', 'left', 'left'],
  );
  for (const row of rows) {
    table.push([
      row.path,
      row.pipelined ? thousands(row.pipelined.perSecond) : '-',
      row.roundTrip ? thousands(row.roundTrip.p50Us) : '-',
      row.roundTrip ? thousands(row.roundTrip.p99Us) : '-',
      Object.entries(row.cpuUsPerRequest ?? {})
        .map(([name, us]) => `${name} ${us === undefined ? '?' : Math.round(us)}`)
        .join(', '),
      row.note,
    ]);
  }
  return table;
}

async function run(c: BenchContext): Promise<BrokerSection> {
  c.progress('starting the broker process');
  const cluster = await BenchCluster.start();
  try {
    const rows = await benchBroker(c, cluster);
    const reference = await benchReference(cluster, { warmUpMs: Math.min(c.warmUpMs, 500), durationMs: c.durationMs, progress: c.progress });
    return { rows, reference };
  } finally {
    c.progress('stopping the cluster');
    await cluster.close();
  }
}

export const brokerSection: BenchSection<BrokerSection> = {
  name: 'broker',
  run,
  report: (section) => [
    new Heading(
      `Broker overhead: echo of a 64-byte body. requests/s: raw MDP/0.2 frames on one DEALER with ${ECHO_WINDOW} requests in flight; round trip: one request at a time; ` +
        'CPU per request: CPU time (user + system, all threads, from /proc) of each process during the requests/s run over the requests answered.',
    ),
    brokerTable(section.rows),
    '',
    new Heading(
      "Against the ZeroMQ Guide's C broker (../shared/reference/zguide-mdp), same run: one MDP/0.1 DEALER client echoing 64 bytes with N in flight, " +
        'two client processes, and sync round trips (one at a time). Every reply is checked to be the echo.',
    ),
    ...referenceReport(section.reference),
    ...clientCpuSummary(section.rows),
  ],
};
