/**
 * Completion notifications of training experiments (`notify` in a `train` request): a JSON POST
 * to a webhook and a plain-text email through an SMTP server (nodemailer). Deliveries run in the
 * background with a timeout per attempt and retries with backoff, so an experiment's reply never
 * waits on them; a delivery that fails in the end is logged, never thrown.
 *
 * @example
 * const notifier = new Notifier({ smtp: 'smtp://mail.example.com:587', mailFrom: 'zerve@example.com' }, log);
 * void notifier.notify({ webhook: 'https://hooks.example.com/zerve', email: ['me@example.com'] }, outcome);
 * await notifier.close();
 */
import { setTimeout as sleep } from 'node:timers/promises';
import nodemailer from 'nodemailer';
import { DEFAULT_NOTIFIER_OPTIONS, type NotifierOptions } from '../../shared/config.ts';
import { ZerveError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/logger.ts';
import { HOSTNAME } from '../../shared/protocol.ts';
import type { TrainingNotification, TrainNotify, TrainResultMessage } from '../../shared/training.ts';
import { codeVersion } from '../../shared/code-version.ts';

/** The content type of every webhook body. */
const WEBHOOK_CONTENT_TYPE = 'application/json';
const MAX_RECIPIENTS = 10;
const MAX_URL_LENGTH = 2048;
// Deliberately plain: a local part without spaces, quotes or separators, and a dotted domain.
// Excluding whitespace also keeps CR/LF (header injection) out of the envelope.
const EMAIL_ADDRESS = /^[^\s@<>()[\]\\,;:"]{1,64}@(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;

/** `notify` as the worker keeps it: validated, email always a list. */
export interface NotifyTarget {
  webhook?: string;
  email?: string[];
}

/** How an experiment ended: `result` when it succeeded, else `error` (CANCELED: canceled). */
export interface ExperimentOutcome {
  experimentId: string;
  datasetId: string;
  datasetName: string | null;
  /** The request's `export.name`. */
  name: string | null;
  runs: number;
  startedAt: Date;
  durationMs: number;
  result?: TrainResultMessage;
  error?: ZerveError;
}

/**
 * Checks a request's `notify` field; BAD_REQUEST unless `webhook` is an http(s) URL and every
 * `email` looks like an address, and when email is asked of a worker without an SMTP server.
 */
export function parseNotify(value: unknown, options: { emailEnabled: boolean }): NotifyTarget | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw new ZerveError('BAD_REQUEST', 'notify must be an object {"webhook"?, "email"?}');
  const { webhook, email, ...rest } = value as TrainNotify & Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) throw new ZerveError('BAD_REQUEST', `notify.${unknown[0]} is not supported (only webhook and email)`);
  const target: NotifyTarget = {};
  if (webhook !== undefined) {
    let url: URL | undefined;
    try {
      if (typeof webhook === 'string' && webhook.length <= MAX_URL_LENGTH) url = new URL(webhook);
    } catch {
      // not a URL: answered below
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
      throw new ZerveError('BAD_REQUEST', `notify.webhook must be an http or https URL; got ${JSON.stringify(String(webhook).slice(0, 100))}`);
    }
    // fetch() refuses URLs with credentials, so every delivery would fail: refuse the request instead.
    if (url.username !== '' || url.password !== '') throw new ZerveError('BAD_REQUEST', 'notify.webhook must not carry user:password');
    target.webhook = url.href;
  }
  if (email !== undefined) {
    const list = typeof email === 'string' ? [email] : email;
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_RECIPIENTS) {
      throw new ZerveError('BAD_REQUEST', `notify.email must be an address or a list of 1 to ${MAX_RECIPIENTS} addresses`);
    }
    for (const address of list) {
      if (typeof address !== 'string' || !EMAIL_ADDRESS.test(address)) {
        throw new ZerveError('BAD_REQUEST', `notify.email: ${JSON.stringify(String(address).slice(0, 100))} is not an email address`);
      }
    }
    if (!options.emailEnabled) {
      throw new ZerveError('BAD_REQUEST', 'notify.email needs a training worker with an SMTP server (--smtp smtp://host:port); this one has none');
    }
    target.email = [...new Set(list as string[])];
  }
  return target.webhook || target.email ? target : undefined;
}

/** The webhook body for an outcome. */
export function trainingNotification(outcome: ExperimentOutcome, finishedAt = new Date()): TrainingNotification {
  const { result, error } = outcome;
  const status = result ? 'succeeded' : error?.code === 'CANCELED' ? 'canceled' : 'failed';
  const test = result ? (({ confusion: _, ...metrics }) => metrics)(result.test) : null;
  return {
    event: 'training.finished',
    experimentId: outcome.experimentId,
    status,
    dataset: { id: outcome.datasetId, name: outcome.datasetName },
    name: outcome.name,
    model: result?.model ?? null,
    best: result?.best ?? null,
    runs: outcome.runs,
    test,
    error: result ? null : { code: error?.code ?? 'INTERNAL', message: error?.message ?? 'unknown error' },
    durationMs: Math.round(outcome.durationMs),
    startedAt: outcome.startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    host: HOSTNAME,
    pid: process.pid,
  };
}

/** Subject and plain-text body of the completion email. */
export function notificationEmail(n: TrainingNotification): { subject: string; text: string } {
  const what = n.name ?? n.dataset.name ?? n.dataset.id;
  const percent = (x: number) => `${(x * 100).toFixed(1)}%`;
  const subject =
    n.status === 'succeeded'
      ? `zerve: ${what} trained, test accuracy ${percent(n.test!.accuracy)}`
      : n.status === 'canceled'
        ? `zerve: ${what} training canceled`
        : `zerve: ${what} training failed: ${n.error!.code}`;
  const lines = [
    `Training experiment ${n.experimentId} ${n.status}.`,
    '',
    `Dataset:     ${n.dataset.name ? `${n.dataset.name} (${n.dataset.id})` : n.dataset.id}`,
  ];
  if (n.model) lines.push(`Model:       ${n.model.name}@${n.model.version} (served as classify.${n.model.name})`);
  else if (n.name) lines.push(`Model:       ${n.name} (not exported)`);
  if (n.best) lines.push(`Best run:    ${n.best.runId} ${JSON.stringify(n.best.params)}, validation accuracy ${percent(n.best.valAccuracy)} at epoch ${n.best.bestEpoch}`);
  lines.push(`Runs:        ${n.runs}`);
  if (n.test) {
    lines.push(`Test:        accuracy ${percent(n.test.accuracy)}, macro F1 ${n.test.macroF1.toFixed(4)}, macro precision ${n.test.macroPrecision.toFixed(4)}, macro recall ${n.test.macroRecall.toFixed(4)}`);
  }
  if (n.error) lines.push(`Error:       ${n.error.code}: ${n.error.message}`);
  lines.push(`Duration:    ${(n.durationMs / 1000).toFixed(1)} s (${n.startedAt} to ${n.finishedAt})`, `Worker:      ${n.host} (pid ${n.pid})`, '');
  return { subject, text: lines.join('\n') };
}

/** A failed delivery attempt; `retryable` for network errors, timeouts, 5xx and 429 (webhook) or 4xx (SMTP). */
class DeliveryError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DeliveryError';
  }
}

/** Delivers completion notifications; one per worker, closed with it. */
export class Notifier {
  readonly options: NotifierOptions;
  private readonly log: Logger;
  private readonly transport?: ReturnType<typeof nodemailer.createTransport>;
  private readonly from: string;
  private readonly userAgent: string;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stopping = new AbortController();
  private closing?: Promise<void>;

  constructor(options: Partial<NotifierOptions>, log: Logger) {
    this.options = {
      smtp: options.smtp ?? DEFAULT_NOTIFIER_OPTIONS.smtp,
      mailFrom: options.mailFrom ?? DEFAULT_NOTIFIER_OPTIONS.mailFrom,
      notifyTimeoutMs: options.notifyTimeoutMs ?? DEFAULT_NOTIFIER_OPTIONS.notifyTimeoutMs,
      notifyRetries: options.notifyRetries ?? DEFAULT_NOTIFIER_OPTIONS.notifyRetries,
      notifyRetryDelayMs: options.notifyRetryDelayMs ?? DEFAULT_NOTIFIER_OPTIONS.notifyRetryDelayMs,
    };
    const { smtp, mailFrom, notifyTimeoutMs, notifyRetries, notifyRetryDelayMs } = this.options;
    if (!(notifyTimeoutMs > 0 && Number.isInteger(notifyRetries) && notifyRetries >= 0 && notifyRetryDelayMs >= 0)) {
      throw new ZerveError('BAD_CONFIG', 'notifyTimeoutMs must be positive, notifyRetries an integer ≥ 0, notifyRetryDelayMs ≥ 0');
    }
    if (smtp !== '' && !/^smtps?:\/\/[^/]/i.test(smtp)) throw new ZerveError('BAD_CONFIG', 'smtp must be an smtp:// or smtps:// URL, or empty (no email)');
    // Loose on purpose (`zerve@localhost` is a fine sender); it only has to be one header line.
    if (mailFrom !== '' && !/^[^\r\n]*@[^\r\n]*$/.test(mailFrom)) throw new ZerveError('BAD_CONFIG', `mailFrom must be an email address; got ${mailFrom}`);
    this.from = mailFrom !== '' ? mailFrom : `zerve@${HOSTNAME}`;
    this.log = log.child({ component: 'notifier' });
    this.userAgent = `zerve/${codeVersion().codeVersion}`;
    if (smtp !== '') {
      this.transport = nodemailer.createTransport({
        url: smtp,
        connectionTimeout: notifyTimeoutMs,
        greetingTimeout: notifyTimeoutMs,
        socketTimeout: notifyTimeoutMs,
        dnsTimeout: notifyTimeoutMs,
      });
    }
  }

  /** Whether this notifier can send email (an SMTP server is configured). */
  get emailEnabled(): boolean {
    return this.transport !== undefined;
  }

  /**
   * Sends the outcome to every target in the background. The promise resolves when every
   * delivery is done or has given up; it never rejects.
   */
  notify(target: NotifyTarget | undefined, outcome: ExperimentOutcome): Promise<void> {
    if (!target || this.closing) return Promise.resolve();
    const deliveries: Promise<void>[] = [];
    try {
      const notification = trainingNotification(outcome);
      const log = this.log.child({ experimentId: outcome.experimentId, status: notification.status });
      if (target.webhook) {
        const url = target.webhook;
        deliveries.push(this.deliver('webhook', log.child({ webhook: redactUrl(url) }), (signal) => this.postWebhook(url, notification, signal)));
      }
      if (target.email && this.transport) {
        const to = target.email;
        const mail = notificationEmail(notification);
        const mailLog = log.child({ to });
        deliveries.push(this.deliver('email', mailLog, (signal) => this.sendEmail(to, mail, signal, mailLog)));
      }
    } catch (err) {
      // A notification must never fail the experiment it reports.
      this.log.error({ err, experimentId: outcome.experimentId }, 'cannot build the notification');
    }
    const done = Promise.all(deliveries).then(() => undefined);
    this.inFlight.add(done);
    void done.finally(() => this.inFlight.delete(done));
    return done;
  }

  /**
   * Waits for deliveries in flight (at most `notifyTimeoutMs`), abandons the rest, closes the
   * SMTP transport; idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.inFlight.size > 0) {
        const grace = new AbortController();
        await Promise.race([Promise.all(this.inFlight), sleep(this.options.notifyTimeoutMs, undefined, { signal: grace.signal }).catch(() => undefined)]);
        grace.abort();
      }
      this.stopping.abort();
      await Promise.all(this.inFlight);
      try {
        this.transport?.close();
      } catch (err) {
        this.log.error({ err }, 'error while closing the SMTP transport');
      }
    })();
    return this.closing;
  }

  /** One delivery with a timeout per attempt and retries with doubling pauses; logs, never throws. */
  private async deliver(kind: 'webhook' | 'email', log: Logger, attempt: (signal: AbortSignal) => Promise<void>): Promise<void> {
    const { notifyRetries, notifyRetryDelayMs, notifyTimeoutMs } = this.options;
    const started = performance.now();
    for (let i = 0; ; i++) {
      try {
        await attempt(AbortSignal.any([AbortSignal.timeout(notifyTimeoutMs), this.stopping.signal]));
        log.info({ kind, attempts: i + 1, ms: Math.round(performance.now() - started) }, 'notification delivered');
        return;
      } catch (err) {
        const retryable = !(err instanceof DeliveryError) || err.retryable;
        if (!retryable || i >= notifyRetries || this.stopping.signal.aborted) {
          log.warn({ kind, attempts: i + 1, err, ms: Math.round(performance.now() - started) }, 'notification not delivered');
          return;
        }
        log.debug({ kind, attempt: i + 1, err }, 'notification attempt failed; retrying');
        try {
          await sleep(notifyRetryDelayMs * 2 ** i, undefined, { signal: this.stopping.signal });
        } catch {
          log.warn({ kind, attempts: i + 1, err }, 'notification not delivered: the worker is closing');
          return;
        }
      }
    }
  }

  private async postWebhook(url: string, notification: TrainingNotification, signal: AbortSignal): Promise<void> {
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': WEBHOOK_CONTENT_TYPE, 'user-agent': this.userAgent },
        body: JSON.stringify(notification),
        // A redirected POST would turn into a GET: report it instead of following it.
        redirect: 'manual',
        signal,
      });
    } catch (err) {
      throw new DeliveryError(`webhook unreachable: ${(err as Error).message}`, true, { cause: err });
    }
    // The answer's body is of no interest; cancelling it frees the connection.
    await response.body?.cancel().catch(() => undefined);
    if (!response.ok) {
      throw new DeliveryError(`webhook answered HTTP ${response.status}`, response.status >= 500 || response.status === 429);
    }
  }

  private async sendEmail(to: string[], mail: { subject: string; text: string }, signal: AbortSignal, log: Logger): Promise<void> {
    // nodemailer takes no AbortSignal: its own timeouts bound the session, the race bounds the wait.
    const aborted = new Promise<never>((_, reject) => {
      const fail = () => reject(new DeliveryError('SMTP delivery timed out', true, { cause: signal.reason }));
      if (signal.aborted) fail();
      else signal.addEventListener('abort', fail, { once: true });
    });
    aborted.catch(() => undefined);
    try {
      const info = await Promise.race([this.transport!.sendMail({ from: this.from, to, subject: mail.subject, text: mail.text }), aborted]);
      if (info.rejected.length > 0) log.warn({ rejected: info.rejected }, 'the SMTP server refused some recipients');
    } catch (err) {
      if (err instanceof DeliveryError) throw err;
      const { responseCode } = err as { responseCode?: number };
      // 5xx is permanent (bad recipient, relaying denied); 4xx and connection errors may pass.
      throw new DeliveryError(`SMTP delivery failed: ${(err as Error).message}`, responseCode === undefined || responseCode < 500, { cause: err });
    }
  }
}

/** A URL for logs: its origin only (webhook URLs often carry tokens in the path or the query). */
function redactUrl(url: string): string {
  return new URL(url).origin;
}
