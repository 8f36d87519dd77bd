import { StoreRuns } from '../shared/store/store-runs.ts';
import { parseStoreLocation } from '../shared/store/store-location.ts';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import express, { type Request, type RequestHandler, type Response } from 'express';
import { IDEMPOTENCY_KEY_HEADER, parseIdempotencyKey } from '../shared/idempotency-key.ts';
import { ZerveClient } from '../shared/client.ts';
import { DEFAULT_WEB_APP_OPTIONS, resolveOptions, type WebAppOptions } from '../shared/config.ts';
import { curveOptionsOf } from '../shared/curve-socket-options.ts';
import { pairBrokerKeys, parseBrokerList } from '../shared/broker-list.ts';
import { ZerveError } from '../shared/errors.ts';
import {
  JOBS_CANCEL,
  JOBS_STATUS,
  JOBS_SUBMIT,
  isFinishedState,
  type JobStatus,
  type JobSubmitRequest,
  type JobTicket,
} from '../shared/jobs.ts';
import { logger as rootLogger, type Logger } from '../shared/logger.ts';
import { encodeHeader, encodeJson, type ClassifyReply, type RequestHeader, type SpeaksFor } from '../shared/messages.ts';
import { CLASSIFY_PREFIX, classifyService } from '../shared/protocol.ts';
import { HttpMetrics } from './http-metrics.ts';
import { httpErrorHandler, toZerveError } from './http-error.ts';
import { ClusterMonitor, type ClusterSource } from './cluster-monitor.ts';
import { ClusterRoutes } from './cluster-routes.ts';
import { ModelCatalog } from './model-catalog.ts';
import { OipRoutes } from './oip-routes.ts';
import { OPENAPI_DOCUMENT } from './openapi.ts';
import { readUpload } from './read-upload.ts';
import { RequestValidator, type CheckedParameters } from './request-validator.ts';
import { SampleGallery } from './sample-gallery.ts';
import { ModelRoutes } from './model-routes.ts';
import { TrainingRoutes } from './training-routes.ts';
import { AUTH_MODES, AuthGate, isLoopbackHost, type AuthMode } from './auth-gate.ts';
import { OwnerCheck } from './owner-check.ts';
import { AuditTrail } from './audit-trail.ts';
import { AuthRoutes } from './auth-routes.ts';
import { SessionRoutes } from './session-routes.ts';
import { OIDC_CALLBACK_PATH, OIDC_LOGIN_PATH, OidcLogin } from './oidc-login.ts';
import type { AuthStore } from '../shared/store/auth-store.ts';
import { DeferredAuthStore } from '../shared/store/deferred-auth-store.ts';
import { openAuthStore } from '../shared/store/open-auth-store.ts';
import { redactedUrl } from '../shared/store/postgres-pool.ts';

/** Folder of the page's files (HTML, CSS, JS): served as they are, no build step, no CDN. */
export const PUBLIC_DIR = join(dirname(fileURLToPath(import.meta.url)), 'public');

const SSE_PING_MS = 15_000;
const CLOSE_GRACE_MS = 2000;
/**
 * Connections waiting to be accepted. Node's default of 511 overflows when 1,000 uploads connect at
 * once, and the kernel then drops or resets some of them; Linux caps this at net.core.somaxconn.
 */
const LISTEN_BACKLOG = 4096;

interface ImageQuery {
  model: string;
  topk?: number;
  version?: string;
  cache?: boolean;
  sample?: string;
}

function params(res: Response): CheckedParameters {
  return res.locals.params as CheckedParameters;
}

/**
 * The web app: the upload page and the HTTP API (`/api/...`, described at `/api/openapi.json`) in
 * front of the cluster, talking to the broker with a `ZerveClient`.
 * @example
 * const web = new WebApp({ broker: 'tcp://127.0.0.1:5555', http: 8080, samples: '../shared/fixtures/images' });
 * console.log(await web.start()); // http://127.0.0.1:8080/
 * await web.close();
 */
export class WebApp {
  readonly options: WebAppOptions;
  readonly app: express.Express;
  private readonly client: ZerveClient;
  private readonly catalog: ModelCatalog;
  private readonly gallery: SampleGallery;
  private readonly validator = new RequestValidator(OPENAPI_DOCUMENT);
  private readonly gate: AuthGate;
  private readonly owners: OwnerCheck;
  private readonly audit: AuditTrail;
  /** The auth store this web app opens at start (closed with it); an injected one stays the caller's. */
  private ownStore: DeferredAuthStore | undefined;
  /** The auth store in use: none with auth off. */
  private activeStore: AuthStore | undefined;
  /** `/metrics`: HTTP durations by route and status, and the process's default metrics. */
  readonly metrics = new HttpMetrics();
  /** What the /cluster page shows, polled from the broker. */
  readonly cluster: ClusterMonitor;
  private readonly clusterRoutes: ClusterRoutes;
  /** One client per broker when `broker` lists several, so the /cluster page shows each apart. */
  private readonly brokerClients: ZerveClient[] = [];
  private readonly log: Logger;
  private readonly streams = new Set<AbortController>();
  private server: Server | undefined;
  /** Run history read from the shared store, with `store` set. */
  private storeRuns: StoreRuns | undefined;
  private starting: Promise<string> | undefined;
  private closing: Promise<void> | undefined;
  private inFlight = 0;
  private baseUrl = '';

  /** `authStore`: users and tokens (default: the one `store` names, else SQLite in `data`, when auth is on); the caller closes one it passes. */
  constructor(options: Partial<WebAppOptions> = {}, log: Logger = rootLogger, authStore?: AuthStore) {
    this.options = { ...DEFAULT_WEB_APP_OPTIONS, ...options };
    const o = this.options;
    if (!(Number.isInteger(o.http) && o.http >= 0 && o.http < 65536)) {
      throw new ZerveError('BAD_CONFIG', `http must be a port number, got ${o.http}`);
    }
    for (const key of ['maxUploadBytes', 'requestTimeoutMs', 'maxInFlight', 'probeTimeoutMs', 'eventsPollMs', 'clusterPollMs'] as const) {
      if (!(o[key] > 0)) throw new ZerveError('BAD_CONFIG', `${key} must be positive, got ${o[key]}`);
    }
    this.log = log.child({ component: 'webapp' });
    this.gate = this.authGate(authStore);
    this.activeStore = this.gate.enabled ? (authStore ?? this.ownStore) : undefined;
    this.owners = new OwnerCheck(this.activeStore);
    this.audit = new AuditTrail(this.activeStore, this.log);
    this.client = new ZerveClient({ broker: o.broker, timeoutMs: o.requestTimeoutMs, retries: 0, ...curveOptionsOf(o) }, log);
    this.catalog = new ModelCatalog(this.client, o);
    this.gallery = new SampleGallery(o.samples);
    this.cluster = new ClusterMonitor(this.clusterSources(log), { pollMs: o.clusterPollMs }, this.log);
    this.clusterRoutes = new ClusterRoutes(this.cluster);
    this.app = this.routes();
  }

  /** The base URL, once started, e.g. `http://127.0.0.1:8080/`. */
  get url(): string {
    return this.baseUrl;
  }

  /** Listens on `host:http`; resolves with the page's URL. */
  start(): Promise<string> {
    this.starting ??= (async () => {
      try {
        await this.ownStore?.open();
        // SQLite stores are each training worker's own: their history is read through the broker.
        if (this.options.store !== '' && parseStoreLocation(this.options.store, '').kind === 'postgres') {
          const { openExperimentStore } = await import('../shared/store/open-experiment-store.ts');
          this.storeRuns = new StoreRuns(await openExperimentStore(this.options.store, '.', this.log, { readonly: true }));
        }
      } catch (err) {
        await this.ownStore?.close(); // a web app that does not start leaves no store open
        throw err;
      }
      const server = this.app.listen(this.options.http, this.options.host, LISTEN_BACKLOG);
      this.server = server;
      await once(server, 'listening');
      const { port } = server.address() as AddressInfo;
      const host = this.options.host.includes(':') ? `[${this.options.host}]` : this.options.host;
      this.baseUrl = `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}/`;
      this.cluster.start();
      this.log.info({ url: this.baseUrl }, 'web app listening');
      return this.baseUrl;
    })();
    return this.starting;
  }

  /** Stops listening, ends event streams, lets requests in flight finish (briefly), closes the client; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const stream of this.streams) stream.abort();
      this.cluster.close();
      this.clusterRoutes.close();
      const server = this.server;
      if (server?.listening) {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const grace = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        await closed;
        clearTimeout(grace);
      }
      try {
        await this.client.close();
        await Promise.all(this.brokerClients.map((c) => c.close()));
      } catch (err) {
        this.log.error({ err }, 'closing the client failed');
      }
      try {
        await this.ownStore?.close();
      } catch (err) {
        this.log.error({ err }, 'closing the auth store failed');
      }
      await this.storeRuns?.close().catch((err: unknown) => this.log.error({ err }, 'closing the experiment store failed'));
      this.log.info('web app closed');
    })();
    return this.closing;
  }

  private routes(): express.Express {
    const app = express();
    // Who may call comes before what they send: a stranger learns nothing from validation errors.
    const check = (operationId: string): RequestHandler => {
      const guard = this.gate.guard(operationId);
      const validate = this.validator.middleware(operationId);
      return (req, res, next) =>
        guard(req, res, (err?: unknown) => {
          if (err !== undefined) return next(err);
          try {
            validate(req, res, next); // throws BAD_REQUEST, maybe after the gate's await: hand it to express
          } catch (error) {
            next(error);
          }
        });
    };
    app.disable('x-powered-by');
    app.use(this.metrics.middleware);
    app.use(this.securityHeaders);
    app.get('/healthz', (_req, res) => {
      res.json({ status: 'ok' });
    });
    app.get('/readyz', this.ready);
    app.get('/metrics', this.gate.guard('metrics'), this.metrics.handler);
    app.get('/api/openapi.json', (_req, res) => {
      res.json(OPENAPI_DOCUMENT);
    });
    app.get('/api/info', check('info'), this.info);
    app.get('/api/samples/:name', check('sample'), this.sample);
    app.post('/api/classify', check('classify'), this.classify);
    app.post('/api/jobs', check('submitJob'), this.submitJob);
    app.get('/api/jobs/:id', check('jobStatus'), this.jobStatus);
    app.delete('/api/jobs/:id', check('cancelJob'), this.cancelJob);
    app.get('/api/jobs/:id/events', check('jobEvents'), this.jobEvents);
    new ModelRoutes({ options: this.options, withSlot: (work) => this.withSlot(work), audit: this.audit, owners: this.owners }).register(app, check);
    new AuthRoutes(this.activeStore).register(app, check);
    const openToOthers = !this.gate.enabled && !isLoopbackHost(this.options.host);
    const sessions = new SessionRoutes(this.activeStore, this.gate, this.audit, { sessionTtlMs: this.options.sessionTtlMs, insecure: openToOthers });
    sessions.register(app, check);
    if (this.options.auth === 'oidc' && this.activeStore) {
      const oidc = new OidcLogin(this.options, this.activeStore, sessions, this.log);
      app.get(OIDC_LOGIN_PATH, oidc.login);
      app.get(OIDC_CALLBACK_PATH, oidc.callback);
    }
    new TrainingRoutes({ client: this.client, catalog: this.catalog, options: this.options, withSlot: (work) => this.withSlot(work), owners: this.owners, audit: this.audit, storeRuns: () => this.storeRuns }).register(app, check);
    new OipRoutes({
      client: this.client,
      catalog: this.catalog,
      options: this.options,
      withSlot: (work) => this.withSlot(work),
      signalOf: (res) => this.abortOnDisconnect(res).signal,
      logger: this.log,
    }).register(app, check);
    app.use('/cluster', this.gate.require('read'), this.clusterRoutes.router);
    app.use('/api', this.notFound);
    app.use(express.static(PUBLIC_DIR, { index: 'index.html', maxAge: 0 }));
    app.use(this.notFound);
    app.use(httpErrorHandler(this.log, this.options.retryAfterSeconds, (error) => error.toJSON()));
    return app;
  }

  /** The gate of `options.auth`; refuses an open web app on a non-loopback address unless `insecure`. */
  private authGate(injected: AuthStore | undefined): AuthGate {
    const o = this.options;
    if (!(AUTH_MODES as readonly string[]).includes(o.auth)) {
      throw new ZerveError('BAD_CONFIG', `auth must be one of ${AUTH_MODES.join(', ')}, got ${JSON.stringify(o.auth)}`);
    }
    if (o.metricsAuth !== 'open' && o.metricsAuth !== 'token') {
      throw new ZerveError('BAD_CONFIG', `metricsAuth must be open or token, got ${JSON.stringify(o.metricsAuth)}`);
    }
    const auth = o.auth as AuthMode;
    if (auth === 'oidc' && (o.oidcIssuer === '' || o.oidcClientId === '')) {
      throw new ZerveError('BAD_CONFIG', 'auth oidc needs --oidc-issuer and --oidc-client-id (docs/auth.md)');
    }
    if (auth === 'off' && !isLoopbackHost(o.host)) {
      if (!o.insecure) {
        throw new ZerveError(
          'BAD_CONFIG',
          `refusing to listen on ${o.host} with --auth off: anyone who reaches the port could upload models, start trainings and cancel jobs. ` +
            'Use --auth tokens (docs/auth.md), listen on 127.0.0.1, or pass --insecure to run open anyway',
        );
      }
      this.log.warn({ host: o.host }, 'auth is off on a non-loopback address (--insecure): every route is open to anyone who reaches it');
    } else if (auth === 'off') {
      this.log.info({ host: o.host }, 'auth is off: every route is open to this machine (loopback); --auth tokens asks for tokens');
    }
    // Opened in start(): a PostgreSQL store (`store`) takes a connection and migrations.
    this.ownStore = auth === 'off' || injected ? undefined : new DeferredAuthStore(() => openAuthStore(o.store, o.data, this.log));
    const store = auth === 'off' ? undefined : (injected ?? this.ownStore);
    const location = o.store === '' ? o.data : redactedUrl(o.store);
    if (store) this.log.info({ auth, store: injected ? 'injected' : location }, 'auth is on: routes ask for bearer tokens');
    return new AuthGate(
      { auth, metricsAuth: o.metricsAuth, authCacheMs: o.authCacheMs, maxAuthFailures: o.maxAuthFailures, authFailureWindowMs: o.authFailureWindowMs },
      store,
      this.log,
    );
  }

  /** The brokers /cluster polls: the web app's own client for one broker, a client each for a comma-separated list. */
  private clusterSources(log: Logger): ClusterSource[] {
    const endpoints = parseBrokerList(this.options.broker, 'broker');
    if (endpoints.length <= 1) return [{ endpoint: this.options.broker, client: this.client }];
    // Under CURVE, --broker-key may name one key per broker: each client takes its own broker's.
    const brokerKeys = pairBrokerKeys(this.options.brokerKey, endpoints.length);
    return endpoints.map((endpoint, i) => {
      const curve = { ...curveOptionsOf(this.options), brokerKey: brokerKeys[i]! };
      const client = new ZerveClient({ broker: endpoint, timeoutMs: this.options.requestTimeoutMs, retries: 0, ...curve }, log);
      this.brokerClients.push(client);
      return { endpoint, client };
    });
  }

  private readonly securityHeaders: RequestHandler = (_req, res, next) => {
    // Everything comes from this server: a CDN could not load even if the page asked for one.
    res.set({
      'Content-Security-Policy':
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; " +
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
    });
    next();
  };

  private readonly ready: RequestHandler = async (_req, res) => {
    try {
      const services = await this.catalog.serviceList(0);
      const models = services
        .filter((s) => s.name.startsWith(CLASSIFY_PREFIX) && s.workers > 0)
        .map((s) => s.name.slice(CLASSIFY_PREFIX.length));
      const jobs = services.some((s) => s.name === JOBS_SUBMIT && s.workers > 0);
      if (models.length > 0) {
        res.json({ ready: true, models, jobs });
        return;
      }
      const error = new ZerveError('NO_WORKERS', 'the broker answers, but no worker serves a model');
      res.status(503).set('Retry-After', String(this.options.retryAfterSeconds));
      res.json({ ready: false, models, jobs, error: error.toJSON().error });
    } catch (err) {
      const error = toZerveError(err);
      res.status(503).set('Retry-After', String(this.options.retryAfterSeconds));
      res.json({ ready: false, error: { code: error.code, message: `the broker does not answer: ${error.message}` } });
    }
  };

  private readonly info: RequestHandler = async (_req, res) => {
    const [models, samples, jobs] = await Promise.all([
      this.catalog.modelList(),
      this.gallery.list(),
      this.catalog.jobsAvailable(),
    ]);
    res.json({ models, samples, maxUploadBytes: this.options.maxUploadBytes, jobs });
  };

  private readonly sample: RequestHandler = async (_req, res) => {
    const name = params(res).path.name as string;
    let bytes: Buffer;
    try {
      bytes = await this.gallery.read(name);
    } catch {
      throw new ZerveError('NOT_FOUND', `no sample image named ${JSON.stringify(name)}`);
    }
    res.type(this.gallery.typeOf(name)).set('Cache-Control', 'public, max-age=300').send(bytes);
  };

  private readonly classify: RequestHandler = async (req, res) => {
    const started = performance.now();
    const query = params(res).query as unknown as ImageQuery;
    await this.withSlot(async () => {
      await this.catalog.requireModel(query.model);
      const image = await this.readImage(req, query);
      const controller = this.abortOnDisconnect(res);
      const reply = await this.client.classify(query.model, image, this.headerOf(query), {
        timeoutMs: this.options.requestTimeoutMs,
        retries: 0,
        signal: controller.signal,
      });
      const body: ClassifyReply = { ...reply, timings: { ...reply.timings, httpMs: round(performance.now() - started) } };
      res.json(body);
    });
  };

  private readonly submitJob: RequestHandler = async (req, res) => {
    const query = params(res).query as unknown as ImageQuery;
    await this.withSlot(async () => {
      await this.requireJobs();
      await this.catalog.requireModel(query.model);
      const key = parseIdempotencyKey(req.get(IDEMPOTENCY_KEY_HEADER));
      const image = await this.readImage(req, query);
      const request: JobSubmitRequest & SpeaksFor = { service: classifyService(query.model), ...(key ? { key } : {}), ...this.speaksFor(res) };
      // With a key the jobs service answers a resend with the first ticket, so it may go through another broker.
      const ticket = await this.client.requestJson<JobTicket>(
        JOBS_SUBMIT,
        [encodeJson(request), encodeHeader(this.headerOf(query)), image],
        { timeoutMs: this.options.requestTimeoutMs, retries: 0, idempotent: key !== undefined },
      );
      await this.owners.record('job', ticket.id, AuthGate.principalOf(res));
      const url = `/api/jobs/${encodeURIComponent(ticket.id)}`;
      res.status(202).location(url).json({ id: ticket.id, state: ticket.state, url, eventsUrl: `${url}/events` });
    });
  };

  private readonly jobStatus: RequestHandler = async (_req, res) => {
    const id = params(res).path.id as string;
    await this.owners.requireRead('job', id, AuthGate.principalOf(res));
    res.json(await this.askJobs(JOBS_STATUS, id, 0, this.speaksFor(res)));
  };

  private readonly cancelJob: RequestHandler = async (_req, res) => {
    const id = params(res).path.id as string;
    await this.owners.requireOwner('job', id, AuthGate.principalOf(res));
    const status = await this.askJobs(JOBS_CANCEL, id, 0, this.speaksFor(res));
    await this.audit.record(res, 'job.cancel', id, { state: status.state });
    res.json(status);
  };

  /** Server-Sent Events: polls the jobs service and sends what changed, until the job is finished. */
  private readonly jobEvents: RequestHandler = async (req, res) => {
    const id = params(res).path.id as string;
    const lastEventId = Number(req.get('last-event-id'));
    let since = Number.isInteger(lastEventId) && lastEventId > 0 ? lastEventId : 0;
    await this.owners.requireRead('job', id, AuthGate.principalOf(res));
    const caller = this.speaksFor(res);
    let status = await this.askJobs(JOBS_STATUS, id, since, caller); // unknown job: a 404 before the stream starts
    const stop = new AbortController();
    this.streams.add(stop);
    res.on('close', () => stop.abort());
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    let lastWrite = Date.now();
    const send = (event: string, data: unknown, eventId?: number) => {
      res.write(`${eventId === undefined ? '' : `id: ${eventId}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      lastWrite = Date.now();
    };
    res.write('retry: 2000\n\n');
    let state: string | undefined;
    try {
      while (!stop.signal.aborted) {
        if (status.state !== state) {
          state = status.state;
          send('state', { state });
        }
        for (const entry of status.progress) {
          if (entry.seq <= since) continue;
          send('progress', entry, entry.seq);
          since = entry.seq;
        }
        if (isFinishedState(status.state)) {
          send('done', status);
          break;
        }
        await sleep(this.options.eventsPollMs, undefined, { signal: stop.signal });
        if (Date.now() - lastWrite > SSE_PING_MS) {
          res.write(': ping\n\n');
          lastWrite = Date.now();
        }
        try {
          status = await this.askJobs(JOBS_STATUS, id, since, caller);
        } catch (err) {
          const error = toZerveError(err);
          if (error.code === 'UNKNOWN_JOB') {
            send('done', { id, state: 'failed', failure: error.toJSON().error });
            break;
          }
          send('warning', error.toJSON().error); // the jobs service is away for a moment: keep polling
        }
      }
    } catch (err) {
      if (!stop.signal.aborted) throw err;
    } finally {
      this.streams.delete(stop);
      res.end();
    }
  };

  private readonly notFound: RequestHandler = (req) => {
    throw new ZerveError('NOT_FOUND', `no route ${req.method} ${req.path}`);
  };

  /** Runs a classification or submission within the bound of requests in flight. */
  private async withSlot(work: () => Promise<void>): Promise<void> {
    if (this.inFlight >= this.options.maxInFlight) {
      throw new ZerveError('OVERLOADED', `${this.options.maxInFlight} requests are in flight; retry later`);
    }
    this.inFlight++;
    try {
      await work();
    } finally {
      this.inFlight--;
    }
  }

  private async readImage(req: Request, query: ImageQuery): Promise<Buffer> {
    const upload = await readUpload(req, this.options.maxUploadBytes);
    if (upload.image && query.sample !== undefined) {
      throw new ZerveError('BAD_REQUEST', 'send an image or name a sample, not both');
    }
    const image = upload.image ?? (query.sample === undefined ? undefined : await this.gallery.read(query.sample));
    if (image === undefined) {
      throw new ZerveError('BAD_REQUEST', 'no image: send the field "image", the image bytes, or sample=NAME');
    }
    if (image.length === 0) throw new ZerveError('BAD_IMAGE', 'the image is empty');
    return image;
  }

  private headerOf(query: ImageQuery): RequestHeader {
    const header: RequestHeader = { deadlineMs: this.options.requestTimeoutMs };
    if (query.topk !== undefined) header.topk = query.topk;
    if (query.version !== undefined) header.version = query.version;
    if (query.cache === false) header.cache = false;
    return header;
  }

  /** An AbortController aborted when the HTTP client goes away before its answer. */
  private abortOnDisconnect(res: Response): AbortController {
    const controller = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) controller.abort();
    });
    return controller;
  }

  private async requireJobs(): Promise<void> {
    if (!(await this.catalog.jobsAvailable())) {
      throw new ZerveError('NO_WORKERS', 'the jobs service is not running');
    }
  }

  /**
   * The HTTP caller, for the broker to stamp on the request when this web app's key is trusted in its
   * `--client-users` file (docs/auth.md); nothing with auth off.
   */
  private speaksFor(res: Response): SpeaksFor {
    if (!this.owners.enabled) return {};
    const principal = AuthGate.principalOf(res);
    return { asUser: principal.userName, asRole: principal.role };
  }

  private async askJobs(service: string, id: string, since: number, caller: SpeaksFor): Promise<JobStatus> {
    await this.requireJobs();
    const request = service === JOBS_STATUS ? { id, since, ...caller } : { id, ...caller };
    return this.client.requestJson<JobStatus>(service, [encodeJson(request)], {
      timeoutMs: this.options.requestTimeoutMs,
      retries: 0,
    });
  }
}

/**
 * Resolves the web app's options from flags (`--http`, `--samples`, ...), `ZERVE_*` variables and the
 * config file, then starts it. For the CLI: `const web = await startWebApp(flags); print(web.url)`.
 */
export async function startWebApp(flags: Record<string, unknown> = {}, log: Logger = rootLogger): Promise<WebApp> {
  const web = new WebApp(resolveOptions(DEFAULT_WEB_APP_OPTIONS, flags), log);
  await web.start();
  return web;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
