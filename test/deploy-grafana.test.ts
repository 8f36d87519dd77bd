import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import type { Broker } from '../broker/broker.ts';
import { logger } from '../shared/logger.ts';
import { MetricsServer } from '../shared/metrics-server.ts';
import { REPO_ROOT, startBroker } from './helpers/cluster.ts';
import { scrape } from './helpers/prometheus-scrape.ts';

if (process.env.ZERVE_LOG_LEVEL === undefined) logger.level = 'silent';

interface Target {
  expr: string;
}
interface Dashboard {
  title: string;
  panels: { title: string; targets: Target[] }[];
  templating: { list: { name: string; query: string | { query: string } }[] };
}

const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'deploy', 'grafana', 'zerve.json'), 'utf8')) as Dashboard;

/** Grafana's variables replaced by what it would put there, so the query is plain PromQL. */
function promql(expr: string): string {
  return expr.replaceAll('$__rate_interval', '5m').replaceAll('$service', '.*');
}

/** Metric names a PromQL expression selects; fails on a syntax error. */
function selectedMetrics(expr: string): string[] {
  const text = promql(expr);
  const names: string[] = [];
  parser.parse(text).iterate({
    enter: (node) => {
      assert.ok(!node.type.isError, `PromQL syntax error at ${node.from} in ${text}`);
      if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector') names.push(text.slice(node.from, node.to));
    },
  });
  return names;
}

/** `label_values(metric, label)` of a query variable. */
function variableMetric(query: string): string {
  const match = /^label_values\((\w+),\s*\w+\)$/.exec(query);
  assert.ok(match, `unexpected variable query ${query}`);
  return match[1]!;
}

describe('Grafana dashboard deploy/grafana/zerve.json', () => {
  let broker: Broker;
  let server: MetricsServer;

  beforeEach(async () => {
    broker = await startBroker();
    server = new MetricsServer({ metricsPort: 0 }, [broker.metrics.registry]);
  });

  afterEach(async () => {
    await server.close();
    await broker.close();
  });

  it('has the panels: requests/s by service and by broker, p50/p99 latency, queue depth, workers per service, errors by code', () => {
    const panel = (title: RegExp) => dashboard.panels.find((p) => title.test(p.title));
    const exprs = (title: RegExp) => panel(title)?.targets.map((t) => t.expr).join('\n') ?? '';
    assert.match(exprs(/^Requests\/s by service/), /sum by \(service\) \(rate\(zerve_request_total/);
    assert.match(exprs(/^Latency p50 \/ p99/), /histogram_quantile\(0\.5, .*zerve_request_duration_seconds_bucket/);
    assert.match(exprs(/^Latency p50 \/ p99/), /histogram_quantile\(0\.99, .*zerve_request_duration_seconds_bucket/);
    assert.match(exprs(/^Queue depth/), /zerve_queue_depth/);
    // Every worker registers on every broker: the most any broker sees, not the sum over brokers.
    assert.match(exprs(/^Workers per service/), /max by \(service\) \(sum by \(service, instance\) \(zerve_workers/);
    assert.match(exprs(/^Requests\/s by broker/), /sum by \(instance\) \(rate\(zerve_request_total/);
    assert.match(exprs(/^Errors\/s by code/), /sum by \(code\) \(rate\(zerve_request_total\{.*code!="OK"/);
  });

  it("queries only metrics the broker's /metrics exposes, in valid PromQL", async () => {
    const exposed = await scrape(await server.start());
    const names = new Set<string>();
    for (const { name, type } of [...exposed.types].map(([name, type]) => ({ name, type }))) {
      names.add(name);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
    }
    const used = dashboard.panels.flatMap((p) => p.targets.flatMap((t) => selectedMetrics(t.expr)));
    for (const v of dashboard.templating.list) if (typeof v.query === 'object') used.push(variableMetric(v.query.query));
    const families = new Set(used.map((metric) => metric.replace(/_bucket$/, '')));
    for (const metric of ['zerve_request_total', 'zerve_request_duration_seconds', 'zerve_queue_duration_seconds', 'zerve_queue_depth', 'zerve_workers', 'zerve_inference_duration_seconds', 'zerve_decode_duration_seconds', 'zerve_worker_lost_total', 'zerve_worker_requeues_total']) {
      assert.ok(families.has(metric), `the dashboard shows ${metric} (docs/operations.md lists it among its panels)`);
    }
    for (const metric of used) assert.ok(names.has(metric), `${metric} is not on the broker's /metrics`);
  });
});
