/**
 * What the broker's metrics hooks cost: the same broker (in this process) and echo worker process,
 * measured in pairs, its `BrokerMetrics` hooks live then turned into no-ops, so a change in the
 * machine's load hits both alike; the ratio is the median of the pairs'. Also the hooks alone, per
 * request, in a tight loop.
 */
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Broker } from '../../broker/broker.ts';
import type { PendingRequest } from '../../broker/pending-request.ts';
import { logger } from '../../shared/logger.ts';
import { encodeJson } from '../../shared/messages.ts';
import { ECHO_SERVICE } from '../../shared/protocol.ts';
import { CliChild } from './cli-child.ts';
import { EchoLoad } from './echo-load.ts';
import { median } from './percentile.ts';
import { Heading, type BenchSection } from './bench-section.ts';
import { ReportTable } from './report-table.ts';

export interface MetricsOverhead {
  /** Echo replies per second through the broker, per run, in the order run. */
  runs: { hooks: boolean; perSecond: number }[];
  withHooksPerSecond: number;
  withoutHooksPerSecond: number;
  /** Median over the pairs of with / without: 1 means the hooks cost nothing measurable. */
  ratio: number;
  /** The hooks of one request (dispatch and final reply), alone, in nanoseconds. */
  hooksNsPerRequest: number;
}

const HOOKS = ['answered', 'replied', 'dispatched'] as const;
const PAIRS = 5;

export async function benchMetricsOverhead(options: { warmUpMs: number; durationMs: number; window: number; progress: (m: string) => void }): Promise<MetricsOverhead> {
  const quiet = logger.child({ component: 'bench' });
  quiet.level = 'warn';
  const broker = new Broker({ frontend: 'tcp://127.0.0.1:0', backend: 'tcp://127.0.0.1:0' }, quiet);
  await broker.start();
  const live = Object.fromEntries(HOOKS.map((h) => [h, broker.metrics[h]]));
  const setHooks = (on: boolean) => {
    for (const h of HOOKS) (broker.metrics as unknown as Record<string, unknown>)[h] = on ? live[h] : () => undefined;
  };
  const registered = once(broker, 'worker-ready');
  const worker = new CliChild(['worker', 'echo', '--capacity', '64', '--connect', broker.backendEndpoint]);
  const load = new EchoLoad({ endpoint: broker.frontendEndpoint });
  const runs: MetricsOverhead['runs'] = [];
  try {
    await registered;
    await load.pipelined(options.window, 0, options.warmUpMs);
    for (let pair = 1; pair <= PAIRS; pair++) {
      options.progress(`metrics overhead: echo through the broker, hooks on then off, pair ${pair}/${PAIRS}`);
      for (const hooks of [true, false]) {
        setHooks(hooks);
        runs.push({ hooks, perSecond: (await load.pipelined(options.window, 0, options.durationMs / 2)).perSecond });
      }
    }
  } finally {
    setHooks(true);
    load.close();
    await worker.stop();
    await broker.close();
  }
  const rate = (hooks: boolean) => runs.filter((r) => r.hooks === hooks).map((r) => r.perSecond);
  const ratios = rate(true).map((on, i) => on / rate(false)[i]!);
  return {
    runs,
    withHooksPerSecond: median(rate(true)),
    withoutHooksPerSecond: median(rate(false)),
    ratio: median(ratios),
    hooksNsPerRequest: hooksAlone(broker),
  };
}

/** `dispatched` + `replied` of one request on a warm service, in ns (what the broker adds per request). */
function hooksAlone(broker: Broker): number {
  const request = { service: ECHO_SERVICE, receivedAt: performance.now(), requeues: 0 } as PendingRequest;
  const body = [encodeJson({ echo: true })];
  const n = 1_000_000;
  for (let i = 0; i < 10_000; i++) broker.metrics.replied(request, body);
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    broker.metrics.dispatched(request);
    broker.metrics.replied(request, body);
  }
  return ((performance.now() - started) * 1e6) / n;
}

export function metricsOverheadTable(result: MetricsOverhead): ReportTable {
  const table = new ReportTable(['broker echo (pipelined)', 'requests/s (median)', 'vs hooks off (median of pairs)']);
  table.push(['metrics hooks on', Math.round(result.withHooksPerSecond), `${result.ratio.toFixed(3)}x`]);
  table.push(['metrics hooks off (baseline)', Math.round(result.withoutHooksPerSecond), '1.000x']);
  return table;
}

/** Pipelined echo window of the metrics runs. */
const METRICS_WINDOW = 256;

/** `npm run bench -- metrics`: the broker's metrics hooks, on against off. */
export const metricsSection: BenchSection<MetricsOverhead> = {
  name: 'metrics',
  run: (c) => benchMetricsOverhead({ warmUpMs: c.warmUpMs, durationMs: c.durationMs, window: METRICS_WINDOW, progress: c.progress }),
  report: (metrics) => [
    new Heading(
      `Metrics: the broker's metrics hooks, on then off in ${metrics.runs.length / 2} pairs (medians), same broker and echo worker; the hooks alone cost ${metrics.hooksNsPerRequest.toFixed(0)} ns per request`,
    ),
    metricsOverheadTable(metrics),
  ],
};
