import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { SMTPServer } from 'smtp-server';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import { ZerveError } from '../shared/errors.ts';
import { encodeJson } from '../shared/messages.ts';
import { requestTraining, RUNS_LIST, type ExperimentSummary, type TrainHeader, type TrainingNotification, type TrainNotify } from '../shared/training.ts';
import { Notifier } from '../workers/training/notifier.ts';
import { TrainingWorker } from '../workers/training/training-worker.ts';
import { errorCode } from './helpers/error-code.ts';
import { nextWorker, REPO_ROOT, runCli, spawnWorker, startBroker, tempDir, TEST_ENV, TEST_HEARTBEAT_MS, type CliProcess } from './helpers/cluster.ts';

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const MAIL_FROM = 'zerve@test.example';
const RECIPIENTS = ['lead@example.com', 'ops@example.com'];
/** A small real training: a couple of seconds on the built-in digits. */
const QUICK: TrainHeader = { datasetId: 'mnist', family: 'mlp', epochs: 2, params: { hidden: 16 }, export: { name: 'notified' } };
const quiet = pino({ level: 'silent' });

interface WebhookCall {
  method: string;
  headers: IncomingHttpHeaders;
  body: TrainingNotification;
}

/** A local webhook receiver that records each POST and answers 204, 500, or never (`hang`). */
class WebhookServer extends EventEmitter {
  readonly calls: WebhookCall[] = [];
  mode: 'ok' | 'fail' | 'hang' = 'ok';
  private readonly server: Server;
  private readonly hanging = new Set<ServerResponse>();

  constructor() {
    super();
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        this.calls.push({ method: req.method ?? '', headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as TrainingNotification });
        if (this.mode === 'hang') this.hanging.add(res);
        else res.writeHead(this.mode === 'ok' ? 204 : 500).end();
        this.emit('call');
      });
    });
  }

  get pending(): number {
    return [...this.hanging].filter((res) => !res.destroyed && !res.writableEnded).length;
  }

  async start(): Promise<void> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/zerve?token=secret`;
  }

  /** Resolves once `count` calls arrived (at once if they already did). */
  async waitFor(count: number): Promise<WebhookCall[]> {
    while (this.calls.length < count) await once(this, 'call');
    return this.calls;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

interface Mail {
  from: string;
  to: string[];
  subject: string;
  text: string;
}

/** An in-process SMTP server that keeps every message it receives. */
class MailCatcher extends EventEmitter {
  readonly mails: Mail[] = [];
  private readonly server: SMTPServer;

  constructor() {
    super();
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          const { subject, text } = parseMessage(Buffer.concat(chunks).toString('utf8'));
          const { mailFrom, rcptTo } = session.envelope;
          this.mails.push({ from: mailFrom ? mailFrom.address : '', to: rcptTo.map((a) => a.address), subject, text });
          callback();
          this.emit('mail');
        });
      },
    });
  }

  async start(): Promise<void> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server.server, 'listening');
  }

  get url(): string {
    return `smtp://127.0.0.1:${(this.server.server.address() as AddressInfo).port}`;
  }

  async waitFor(count: number): Promise<Mail[]> {
    while (this.mails.length < count) await once(this, 'mail');
    return this.mails;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Subject and decoded text of a single-part plain-text message. */
function parseMessage(raw: string): { subject: string; text: string } {
  const split = raw.indexOf('\r\n\r\n');
  const headers = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const header = (name: string) => new RegExp(`^${name}: *(.*)$`, 'im').exec(headers)?.[1] ?? '';
  let text = raw.slice(split + 4);
  if (/quoted-printable/i.test(header('Content-Transfer-Encoding'))) {
    text = Buffer.from(text.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1').toString('utf8');
  }
  return { subject: header('Subject'), text: text.replace(/\r\n/g, '\n') };
}

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const percent = (x: number) => `${(x * 100).toFixed(1)}%`;

describe('training notifications', function () {
  this.timeout(120_000);
  let dir: { path: string; remove: () => Promise<void> };
  let broker: Broker;
  let webhook: WebhookServer;
  let smtp: MailCatcher;
  let client: ZerveClient;
  let training: CliProcess;

  // One training worker (and the SMTP server it is started with) for all these tests: starting one
  // costs seconds of CPU; each test gets its own webhook receiver and an empty mailbox, and waits for
  // every mail and call it causes, so none arrives in the next test.
  before(async () => {
    dir = await tempDir('zerve-training-notify-');
    broker = await startBroker();
    smtp = new MailCatcher();
    await smtp.start();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 60_000 });
    training = await spawnWorker(
      broker,
      ['training', '--data', join(dir.path, 'data'), '--models', join(dir.path, 'models'), '--smtp', smtp.url, '--mail-from', MAIL_FROM],
      (w) => w.services.includes('train'),
      // Short enough that a test sees every retry; the timeout bounds a hanging webhook.
      { ...TEST_ENV, ZERVE_NOTIFY_RETRY_DELAY_MS: '50', ZERVE_NOTIFY_TIMEOUT_MS: '3000' },
    );
  });

  after(async () => {
    await client.close();
    await training.kill('SIGTERM');
    await smtp.close();
    await broker.close();
    await dir.remove();
  });

  beforeEach(async () => {
    webhook = new WebhookServer();
    await webhook.start();
    smtp.mails.length = 0;
  });

  afterEach(async () => {
    await webhook.close();
  });

  it('posts the outcome to the webhook and emails it when a training succeeds', async () => {
    const result = await requestTraining(client, { ...QUICK, notify: { webhook: webhook.url, email: RECIPIENTS } });
    const [call] = await webhook.waitFor(1);
    assert.equal(call!.method, 'POST');
    assert.equal(call!.headers['content-type'], 'application/json');
    assert.equal(call!.headers['user-agent'], `zerve/${VERSION}`);
    const body = call!.body;
    assert.equal(body.event, 'training.finished');
    assert.equal(body.experimentId, result.experimentId);
    assert.equal(body.status, 'succeeded');
    assert.deepEqual(body.dataset, { id: 'mnist', name: 'mnist' });
    assert.equal(body.name, 'notified');
    assert.deepEqual(body.model, { name: 'notified', version: '1' });
    assert.deepEqual(body.best, result.best);
    assert.equal(body.runs, 1);
    const { confusion: _, ...metrics } = result.test;
    assert.deepEqual(body.test, metrics);
    assert.equal(body.error, null);
    assert.ok(body.durationMs > 0 && Date.parse(body.finishedAt) >= Date.parse(body.startedAt));
    assert.equal(body.pid, training.pid);

    const [mail] = await smtp.waitFor(1);
    assert.equal(mail!.from, MAIL_FROM);
    assert.deepEqual([...mail!.to].sort(), RECIPIENTS);
    assert.equal(mail!.subject, `zerve: notified trained, test accuracy ${percent(result.test.accuracy)}`);
    assert.match(mail!.text, new RegExp(`^Training experiment ${result.experimentId} succeeded\\.`));
    assert.match(mail!.text, /Model: +notified@1 \(served as classify\.notified\)/);
    assert.match(mail!.text, new RegExp(`Best run: +${result.best.runId} `));
    assert.ok(mail!.text.includes(`accuracy ${percent(result.test.accuracy)}`), mail!.text);
    assert.match(mail!.text, /Dataset: +mnist \(mnist\)/);
  });

  it('sends what zerve train --notify-webhook and --notify-email ask for', async () => {
    const cli = await runCli([
      'train', '--dataset', 'mnist', '--name', 'from-cli', '--epochs', '1', '--param', 'hidden=16', '--json',
      '--notify-webhook', webhook.url, '--notify-email', RECIPIENTS[0]!, '--notify-email', RECIPIENTS[1]!, '--broker', broker.frontendEndpoint,
    ]);
    assert.equal(cli.code, 0, cli.stderr);
    const result = JSON.parse(cli.stdout) as { experimentId: string };
    const [call] = await webhook.waitFor(1);
    assert.equal(call!.body.experimentId, result.experimentId);
    assert.deepEqual(call!.body.model, { name: 'from-cli', version: '1' });
    const [mail] = await smtp.waitFor(1);
    assert.deepEqual([...mail!.to].sort(), RECIPIENTS);
    assert.match(mail!.subject, /^zerve: from-cli trained, test accuracy \d+\.\d%$/);
  });

  it('reports a failed training with its error code', async () => {
    // An unknown backbone fails in data preparation, after the experiment has started.
    const header: TrainHeader = { datasetId: 'mnist', family: 'transfer', backbone: 'no-such-backbone', export: { name: 'broken' }, notify: { webhook: webhook.url, email: RECIPIENTS[0] } };
    assert.equal(await errorCode(requestTraining(client, header)), 'BAD_REQUEST');
    const [call] = await webhook.waitFor(1);
    assert.equal(call!.body.status, 'failed');
    assert.equal(call!.body.error?.code, 'BAD_REQUEST');
    assert.equal(call!.body.model, null);
    assert.equal(call!.body.test, null);
    const [mail] = await smtp.waitFor(1);
    assert.deepEqual(mail!.to, [RECIPIENTS[0]]);
    assert.equal(mail!.subject, 'zerve: broken training failed: BAD_REQUEST');
    assert.match(mail!.text, /failed\./);
    assert.match(mail!.text, /Error: +BAD_REQUEST: /);
  });

  it('reports a canceled training', async () => {
    const controller = new AbortController();
    const header: TrainHeader = { datasetId: 'mnist', family: 'mlp', epochs: 50, params: { hidden: 32, patience: 50 }, export: { name: 'never' }, notify: { webhook: webhook.url, email: RECIPIENTS } };
    const run = requestTraining(client, header, { signal: controller.signal, onProgress: (m) => m.type === 'epoch' && controller.abort() });
    assert.equal(await errorCode(run), 'CANCELED');
    const [call] = await webhook.waitFor(1);
    assert.equal(call!.body.status, 'canceled');
    assert.equal(call!.body.error?.code, 'CANCELED');
    const [mail] = await smtp.waitFor(1);
    assert.equal(mail!.subject, 'zerve: never training canceled');
    assert.match(mail!.text, /canceled\./);
  });

  it('answers BAD_REQUEST for a bad webhook URL or email address, before any training', async () => {
    const train = (notify: unknown) => requestTraining(client, { ...QUICK, notify: notify as TrainNotify });
    const bad: unknown[] = [
      { webhook: 'ftp://example.com/hook' },
      { webhook: 'not a url' },
      { webhook: 'javascript:alert(1)' },
      { webhook: 42 },
      { webhook: 'http://user:secret@127.0.0.1/hook' },
      { email: 'nobody' },
      { email: 'nobody@localhost' },
      { email: ['lead@example.com', 'evil@example.com\r\nBcc: victim@example.com'] },
      { email: [] },
      { sms: '+15550100' },
      'http://example.com/hook',
    ];
    const experiments = () => client.requestJson<ExperimentSummary[]>(RUNS_LIST, [encodeJson({})]);
    const earlier = await experiments();
    for (const notify of bad) assert.equal(await errorCode(train(notify)), 'BAD_REQUEST', JSON.stringify(notify));
    assert.deepEqual(await experiments(), earlier, 'no experiment started');
    assert.equal(webhook.calls.length, 0);
    assert.equal(smtp.mails.length, 0);
  });

  it('answers the training at once while the webhook hangs, and when it refuses connections', async () => {
    webhook.mode = 'hang';
    const first = await requestTraining(client, { ...QUICK, notify: { webhook: webhook.url } });
    await webhook.waitFor(1);
    // The reply came while the POST is still waiting for an answer: delivery never delays it.
    assert.equal(webhook.pending, 1);
    assert.ok(first.test.accuracy > 0);

    const refused = `http://127.0.0.1:${await closedPort()}/hook`;
    const second = await requestTraining(client, { ...QUICK, notify: { webhook: refused, email: RECIPIENTS[0] } });
    assert.deepEqual(second.model, { name: 'notified', version: String(Number(first.model!.version) + 1) });
    const [mail] = await smtp.waitFor(1);
    assert.match(mail!.text, new RegExp(`^Training experiment ${second.experimentId} succeeded`));
  });

  it('retries a webhook that answers 500, then gives up without failing the training', async () => {
    webhook.mode = 'fail';
    const result = await requestTraining(client, { ...QUICK, notify: { webhook: webhook.url, email: RECIPIENTS } });
    // One attempt and two retries (notifyRetries 2), each with the same body.
    const calls = await webhook.waitFor(3);
    assert.ok(calls.every((c) => c.body.experimentId === result.experimentId && c.body.status === 'succeeded'));
    await smtp.waitFor(1);
    assert.equal(webhook.calls.length, 3);
  });
});

describe('training notifications without an SMTP server', function () {
  this.timeout(60_000);
  let dir: { path: string; remove: () => Promise<void> };
  let broker: Broker;
  let client: ZerveClient;
  let worker: TrainingWorker | undefined;

  beforeEach(async () => {
    dir = await tempDir('zerve-training-nosmtp-');
    broker = await startBroker();
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 30_000 });
    worker = new TrainingWorker({ connect: broker.backendEndpoint, data: join(dir.path, 'data'), models: join(dir.path, 'models'), heartbeatIntervalMs: TEST_HEARTBEAT_MS }, quiet);
    const ready = nextWorker(broker, (w) => w.services.includes('train'));
    worker.start();
    await ready;
  });

  afterEach(async () => {
    await client.close();
    await worker?.close();
    worker = undefined;
    await broker.close();
    await dir.remove();
  });

  it('answers BAD_REQUEST to a request for email', async () => {
    assert.equal(await errorCode(requestTraining(client, { ...QUICK, notify: { email: RECIPIENTS[0] } })), 'BAD_REQUEST');
    assert.deepEqual(await client.requestJson<ExperimentSummary[]>(RUNS_LIST, [encodeJson({})]), []);
  });
});

describe('notifier', function () {
  this.timeout(30_000);
  let notifier: Notifier | undefined;

  afterEach(async () => {
    await notifier?.close();
    notifier = undefined;
  });

  const outcome = {
    experimentId: 'e00000000',
    datasetId: 'mnist',
    datasetName: 'mnist',
    name: 'digits',
    runs: 1,
    startedAt: new Date(),
    durationMs: 1000,
    error: new ZerveError('INTERNAL', 'boom'),
  };

  it('gives up on unreachable servers after its retries, without throwing', async () => {
    notifier = new Notifier({ smtp: `smtp://127.0.0.1:${await closedPort()}`, notifyTimeoutMs: 1000, notifyRetries: 1, notifyRetryDelayMs: 10 }, quiet);
    // Resolves (never rejects) once both deliveries have used their attempts; mocha's timeout bounds it.
    await notifier.notify({ webhook: `http://127.0.0.1:${await closedPort()}/`, email: ['lead@example.com'] }, outcome);
  });

  it('closes once, whatever the number of close() calls', async () => {
    notifier = new Notifier({ smtp: 'smtp://127.0.0.1:25' }, quiet);
    assert.equal(notifier.emailEnabled, true);
    const closing = notifier.close();
    assert.equal(notifier.close(), closing);
    await closing;
    // After close nothing is sent, and notify still resolves.
    await notifier.notify({ webhook: 'http://127.0.0.1:9/' }, outcome);
  });

  it('rejects an smtp option that is not an smtp URL', () => {
    assert.throws(() => new Notifier({ smtp: 'mail.example.com' }, quiet), (err: unknown) => err instanceof ZerveError && err.code === 'BAD_CONFIG');
    notifier = new Notifier({}, quiet);
    assert.equal(notifier.emailEnabled, false);
  });
});
