import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type RequestHandler, type Router } from 'express';
import type { ClusterSnapshot } from '../shared/cluster-view.ts';
import { ZerveError } from '../shared/errors.ts';
import type { ClusterMonitor } from './cluster-monitor.ts';

/** The page's own files (HTML, JS, CSS), served by this router only, so whatever guards it guards them. */
const PAGE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'cluster-page');
/** uPlot's browser build, served from node_modules: no build step, no CDN. */
const UPLOT_DIR = dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'));
const SSE_PING_MS = 15_000;

/**
 * The live cluster page and its data, all in one router mounted at `/cluster` (so one guard, such as
 * a `read` scope, covers page, data and stream):
 * - `GET /cluster`: the page
 * - `GET /cluster/snapshot`: the latest `ClusterSnapshot`
 * - `GET /cluster/history?key=*`: 15 minutes of a `ClusterHistory` (`*`, a broker endpoint, `service:<name>`)
 * - `GET /cluster/events`: Server-Sent Events, a `snapshot` event at every poll
 */
export class ClusterRoutes {
  readonly router: Router;
  private readonly streams = new Set<() => void>();

  constructor(private readonly monitor: ClusterMonitor) {
    const router = express.Router({ strict: false });
    router.get('/', (_req, res) => res.sendFile(join(PAGE_DIR, 'index.html')));
    router.get('/snapshot', (_req, res) => {
      res.json(this.monitor.snapshot);
    });
    router.get('/history', this.history);
    router.get('/events', this.events);
    router.use('/uplot', express.static(UPLOT_DIR, { index: false, maxAge: '1h' }));
    router.use(express.static(PAGE_DIR, { index: false, maxAge: 0 }));
    this.router = router;
  }

  /** Ends every open event stream (the web app is closing). */
  close(): void {
    for (const end of this.streams) end();
  }

  private readonly history: RequestHandler = (req, res) => {
    const key = req.query.key;
    if (typeof key !== 'string' || key === '') throw new ZerveError('BAD_REQUEST', 'name a history: key=* (all brokers), a broker endpoint or service:<name>');
    const history = this.monitor.history(key);
    if (!history) throw new ZerveError('NOT_FOUND', `no history ${JSON.stringify(key)}: try key=* or service:<name>`);
    res.json(history);
  };

  private readonly events: RequestHandler = (req, res) => {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    const send = (snapshot: ClusterSnapshot) => res.write(`event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`);
    send(this.monitor.snapshot);
    const ping = setInterval(() => res.write(': ping\n\n'), SSE_PING_MS);
    const end = () => {
      clearInterval(ping);
      this.monitor.off('snapshot', send);
      this.streams.delete(end);
      res.end();
    };
    this.monitor.on('snapshot', send);
    this.streams.add(end);
    req.on('close', end);
  };
}
