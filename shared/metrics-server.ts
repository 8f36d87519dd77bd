import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { DEFAULT_METRICS_OPTIONS, type MetricsOptions } from './config.ts';
import { ZerveError } from './errors.ts';
import { logger as rootLogger, type Logger } from './logger.ts';

let processRegistry: Registry | undefined;

/**
 * The process's default metrics (CPU, memory, event loop lag, GC; prom-client's
 * `collectDefaultMetrics`), created once per process however many components it runs.
 */
export function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** The Prometheus text of the process's default metrics plus the given registries. */
export async function scrape(registries: readonly Registry[]): Promise<{ contentType: string; body: string }> {
  const merged = Registry.merge([processMetrics(), ...registries]);
  return { contentType: merged.contentType, body: await merged.metrics() };
}

/**
 * A small HTTP server for processes without one of their own (broker, workers): `GET /metrics` in
 * the Prometheus text format, and `GET /healthz` (200 while the process is up: a liveness probe).
 * @example
 * const server = new MetricsServer({ metricsPort: 9100 }, [broker.metrics.registry]);
 * await server.start();
 */
export class MetricsServer {
  readonly options: MetricsOptions;
  private readonly log: Logger;
  private server: Server | undefined;
  private starting: Promise<string> | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    options: Partial<MetricsOptions>,
    private readonly registries: readonly Registry[],
    log: Logger = rootLogger,
  ) {
    this.options = { ...DEFAULT_METRICS_OPTIONS, ...options };
    const port = this.options.metricsPort;
    if (!(Number.isInteger(port) && port >= 0 && port < 65536)) {
      throw new ZerveError('BAD_CONFIG', `metricsPort must be a port number, got ${port}`);
    }
    this.log = log.child({ component: 'metrics' });
  }

  /** Listens; resolves with the metrics URL, e.g. `http://127.0.0.1:9100/metrics`. */
  start(): Promise<string> {
    this.starting ??= (async () => {
      const server = createServer((req, res) => void this.handle(req, res));
      this.server = server;
      server.listen(this.options.metricsPort, this.options.metricsHost);
      await once(server, 'listening');
      const { port } = server.address() as AddressInfo;
      const url = `http://${this.options.metricsHost.includes(':') ? `[${this.options.metricsHost}]` : this.options.metricsHost}:${port}/metrics`;
      this.log.info({ url }, 'metrics listening');
      return url;
    })();
    return this.starting;
  }

  /** The bound port, once started. */
  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Stops listening; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const server = this.server;
      if (!server?.listening) return;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    })();
    return this.closing;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (req.method === 'GET' && path === '/metrics') {
        const { contentType, body } = await scrape(this.registries);
        res.writeHead(200, { 'Content-Type': contentType }).end(body);
      } else if (req.method === 'GET' && path === '/healthz') {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
      } else {
        const error = new ZerveError('NOT_FOUND', `no route ${req.method} ${path}: try GET /metrics or /healthz`);
        res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify(error.toJSON()));
      }
    } catch (err) {
      this.log.error({ err }, 'metrics scrape failed');
      res.writeHead(500, { 'Content-Type': 'application/json' }).end(JSON.stringify(ZerveError.from(err).toJSON()));
    }
  }
}

/**
 * Starts a metrics server when `metricsPort` is set (it is off by default); for the CLI's broker and
 * worker commands. Resolves with the server, or undefined when off.
 */
export async function startMetricsServer(options: MetricsOptions, registries: readonly Registry[], log?: Logger): Promise<MetricsServer | undefined> {
  if (options.metricsPort < 0) return undefined;
  const server = new MetricsServer(options, registries, log);
  await server.start();
  return server;
}
