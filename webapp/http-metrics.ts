import { performance } from 'node:perf_hooks';
import type { Request, RequestHandler } from 'express';
import { Registry } from 'prom-client';
import { MetricTable } from '../shared/metric-table.ts';
import { METRICS } from '../shared/metrics.ts';
import { scrape } from '../shared/metrics-server.ts';

/**
 * The web app's Prometheus metrics: `zerve_http_request_duration_seconds{route,status}` by route
 * pattern (never the raw URL, so ids do not make new series), and `/metrics` serving them with the
 * process's default metrics.
 */
export class HttpMetrics {
  readonly registry = new Registry();
  private readonly durations = new MetricTable(METRICS.httpRequestDuration).registerIn(this.registry);
  private readonly included: Registry[] = [];

  /** Times every request until its answer is written. */
  readonly middleware: RequestHandler = (req, res, next) => {
    const started = performance.now();
    res.once('finish', () => {
      this.durations.child(routeOf(req, res.statusCode), String(res.statusCode)).observe((performance.now() - started) / 1000);
    });
    next();
  };

  /**
   * Also serves `registry` at `/metrics`: in a process that runs the broker too (`zerve up`), the
   * broker's cluster series, so one scrape of the web app's port shows everything.
   */
  include(registry: Registry): void {
    if (!this.included.includes(registry)) this.included.push(registry);
  }

  /** `GET /metrics`. */
  readonly handler: RequestHandler = async (_req, res) => {
    const { contentType, body } = await scrape([this.registry, ...this.included]);
    res.type(contentType).send(body);
  };
}

/** The matched route's pattern (`/api/jobs/:id`); `static` for the page's files, `unmatched` for a 404 without a route. */
function routeOf(req: Request, status: number): string {
  const route = req.route as { path?: unknown } | undefined;
  if (typeof route?.path === 'string') return `${req.baseUrl}${route.path}`;
  return status === 404 ? 'unmatched' : 'static';
}
