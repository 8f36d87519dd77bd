import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFile, copyFile, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { pino } from 'pino';
import * as zmq from 'zeromq';
import { Broker } from '../broker/broker.ts';
import { RefusalLog } from '../broker/refusal-log.ts';
import { ZerveClient } from '../shared/client.ts';
import type { BrokerOptions } from '../shared/config.ts';
import { generateKeyFiles, readKeyPair, readPublicKey } from '../shared/curve-keys.ts';
import { proveKey } from '../shared/key-proof.ts';
import type { SecurityInfo, WorkerInfo } from '../shared/messages.ts';
import { MMI_SECURITY, encodeReady } from '../shared/protocol.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { CliProcess, REPO_ROOT, TEST_ENV, TEST_HEARTBEAT_MS, runCli, spawnWorker, startBroker, tempDir } from './helpers/cluster.ts';
import { errorCode } from './helpers/error-code.ts';
import { eventually } from './helpers/eventually.ts';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';

interface LogLine {
  msg: string;
  reason?: string;
  publicKey?: string;
  address?: string;
  socket?: string;
  why?: string;
  [key: string]: unknown;
}

/** A logger whose lines the test reads. */
function capturedLogger(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}


const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('CURVE keys and authentication (ZAP)', function () {
  this.timeout(120_000);
  let dir: { path: string; remove: () => Promise<void> };
  let keys: string;
  let allowed: string;
  const key = (name: string) => join(keys, `${name}.key`);
  const pub = (name: string) => join(keys, `${name}.pub`);
  const processes: CliProcess[] = [];
  const brokers: Broker[] = [];
  const clients: ZerveClient[] = [];

  before(async () => {
    dir = await tempDir('zerve-curve-');
    keys = join(dir.path, 'keys');
    for (const name of ['broker', 'host-a', 'host-b', 'stranger', 'client']) await generateKeyFiles(name, keys);
  });

  beforeEach(async () => {
    allowed = join(dir.path, `allowed-${Date.now()}`);
    await mkdir(allowed);
    await copyFile(pub('host-a'), join(allowed, 'host-a.pub'));
    await copyFile(pub('host-b'), join(allowed, 'host-b.pub'));
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await Promise.all(processes.splice(0).map((p) => p.kill()));
    await Promise.all(brokers.splice(0).map((b) => b.close()));
  });

  after(async () => {
    await dir?.remove();
  });

  async function curveBroker(options: Partial<BrokerOptions> = {}): Promise<{ broker: Broker; lines: LogLine[] }> {
    const { log, lines } = capturedLogger();
    const broker = new Broker(
      {
        frontend: 'tcp://127.0.0.1:0',
        backend: 'tcp://127.0.0.1:0',
        heartbeatIntervalMs: TEST_HEARTBEAT_MS,
        curveKey: key('broker'),
        authorizedWorkers: allowed,
        ...options,
      },
      log,
    );
    brokers.push(broker);
    await broker.start();
    return { broker, lines };
  }

  function client(broker: Broker, options: ConstructorParameters<typeof ZerveClient>[0] = {}): ZerveClient {
    const c = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 10_000, ...options });
    clients.push(c);
    return c;
  }

  const workerArgs = (name: string) => ['--curve-key', key(name), '--broker-key', pub('broker')];

  async function keyedWorker(broker: Broker, name: string, ...extra: string[]): Promise<CliProcess> {
    const worker = await spawnWorker(broker, ['echo', ...workerArgs(name), ...extra]);
    processes.push(worker);
    return worker;
  }

  /** A worker process that is expected never to register. */
  function refusedWorker(broker: Broker, args: string[]): CliProcess {
    const worker = new CliProcess(['worker', 'echo', '--connect', broker.backendEndpoint, ...args]);
    processes.push(worker);
    return worker;
  }

  const refusals = (lines: LogLine[], filter: (l: LogLine) => boolean) => lines.filter((l) => l.msg === 'peer refused' && filter(l));

  it('writes a key pair: NAME.key mode 0600 with the secret, NAME.pub with the public key, both readable by pyzmq', async () => {
    const out = join(dir.path, 'generated');
    const result = await runCli(['keys', 'generate', 'host-c', '--dir', out]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal((await stat(join(out, 'host-c.key'))).mode & 0o777, 0o600);
    const pair = readKeyPair(join(out, 'host-c.key'));
    assert.equal(readPublicKey(join(out, 'host-c.pub')), pair.publicKey);
    assert.doesNotMatch(await readFile(join(out, 'host-c.pub'), 'utf8'), /secret-key/);
    const { stdout } = await run(PYTHON, ['-c', 'import sys, zmq.auth; p, s = zmq.auth.load_certificate(sys.argv[1]); q, n = zmq.auth.load_certificate(sys.argv[2]); print(p.decode(), s.decode(), q.decode(), n)', join(out, 'host-c.key'), join(out, 'host-c.pub')]);
    assert.equal(stdout.trim(), `${pair.publicKey} ${pair.secretKey} ${pair.publicKey} None`);

    // Bad input: an existing key is never overwritten, a name with a path in it is refused.
    const again = await runCli(['keys', 'generate', 'host-c', '--dir', out]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /BAD_REQUEST: .*host-c\.key already exists/);
    assert.equal(readKeyPair(join(out, 'host-c.key')).secretKey, pair.secretKey);
    const badName = await runCli(['keys', 'generate', '../evil', '--dir', out]);
    assert.match(badName.stderr, /BAD_REQUEST: key name must be/);
  });

  it('admits a listed worker and refuses one without a key and one with an unlisted key, logging each once', async () => {
    const { broker, lines } = await curveBroker();
    const good = await keyedWorker(broker, 'host-a');
    const noKey = refusedWorker(broker, []);
    const stranger = refusedWorker(broker, workerArgs('stranger'));
    const strangerKey = readKeyPair(key('stranger')).publicKey;
    await eventually('both refusals to be logged', () =>
      refusals(lines, (l) => l.publicKey === strangerKey).length > 0 && refusals(lines, (l) => /handshake failed/.test(l.reason ?? '')).length > 0,
    );
    const c = client(broker);
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => c.request('echo', [Buffer.from(`r${i}`)])));
    assert.deepEqual(replies.map((r) => String(r[0])), Array.from({ length: 20 }, (_, i) => `r${i}`));
    // The refused workers keep retrying (a reconnect per liveness period): still one log line each.
    await sleep(TEST_HEARTBEAT_MS * 3 * 4);
    const workers = await c.workers();
    assert.deepEqual(workers.map((w) => w.pid), [good.pid], 'only the listed worker registered, so only it got requests');
    const strangerLines = refusals(lines, (l) => l.publicKey === strangerKey);
    assert.equal(strangerLines.length, 1);
    assert.equal(strangerLines[0]!.address, '127.0.0.1');
    assert.equal(strangerLines[0]!.socket, 'workers');
    assert.equal(refusals(lines, (l) => /handshake failed/.test(l.reason ?? '')).length, 1);
    assert.ok(noKey.child.exitCode === null && stranger.child.exitCode === null, 'refused workers keep running and retrying');
  });

  it('ignores a READY from an admitted key without a valid key proof: that peer gets no request', async () => {
    const { broker, lines } = await curveBroker();
    const pair = readKeyPair(key('host-a'));
    const brokerKey = readPublicKey(pub('broker'));
    const sockets = ['no-proof', 'proof-for-another-id'].map(
      (routingId) => new zmq.Dealer({ linger: 0, routingId, curveServerKey: brokerKey, curvePublicKey: pair.publicKey, curveSecretKey: pair.secretKey }),
    );
    try {
      for (const s of sockets) s.connect(broker.backendEndpoint);
      await sockets[0]!.send(encodeReady({ services: ['hijack'], capacity: 10 }));
      await sockets[1]!.send(encodeReady({ services: ['hijack'], capacity: 10, keyProof: proveKey(pair, brokerKey, Buffer.from('someone-else')) }));
      await eventually('both READYs to be refused', () => refusals(lines, (l) => /^READY/.test(l.reason ?? '')).length === 2);
      const reasons = refusals(lines, (l) => /^READY/.test(l.reason ?? '')).map((l) => l.reason).sort();
      assert.match(reasons[0]!, /does not verify/);
      assert.match(reasons[1]!, /without a key proof/);
      const c = client(broker);
      assert.equal(await errorCode(c.requestJson('hijack', [json({ deadlineMs: 500 })])), 'NO_WORKERS');
      assert.deepEqual(await c.workers(), []);
    } finally {
      for (const s of sockets) s.close();
    }
  });

  it('drops a worker at once when its key is removed from the folder, requeueing its in-flight requests, and refuses it afterwards', async () => {
    const { broker, lines } = await curveBroker();
    const a = await keyedWorker(broker, 'host-a', '--capacity', '4');
    await keyedWorker(broker, 'host-b', '--capacity', '4');
    const c = client(broker);
    const requests = Array.from({ length: 8 }, (_, i) => c.request('echo', [json({ delayMs: 1500 }), Buffer.from(String(i))]));
    await eventually('both workers to hold requests', async () => (await c.workers()).filter((w) => w.inFlight > 0).length === 2);
    const removed = new Promise<[WorkerInfo, string]>((resolve) => broker.once('worker-removed', (info: WorkerInfo, reason: string) => resolve([info, reason])));
    await rm(join(allowed, 'host-a.pub'));
    const [info, reason] = await removed;
    assert.equal(info.pid, a.pid);
    assert.equal(reason, 'key revoked');
    assert.deepEqual((await Promise.all(requests)).map((r) => String(r[1])), ['0', '1', '2', '3', '4', '5', '6', '7']);
    const aKey = readKeyPair(key('host-a')).publicKey;
    await eventually('the revoked worker to be refused at its reconnection', () => refusals(lines, (l) => l.publicKey === aKey).length > 0);
    assert.ok(!(await c.workers()).some((w) => w.pid === a.pid));
    assert.ok(lines.some((l) => l.msg === 'allowlist reloaded' && l.why === 'file changed'));
  });

  it('admits a key added to an allowlist file, and reloads on SIGHUP', async () => {
    const file = join(dir.path, `workers-${Date.now()}.txt`);
    await writeFile(file, `# worker keys\n${readKeyPair(key('host-a')).publicKey}\n`);
    const { broker, lines } = await curveBroker({ authorizedWorkers: file });
    await keyedWorker(broker, 'host-a');
    const late = refusedWorker(broker, workerArgs('host-b'));
    const bKey = readKeyPair(key('host-b')).publicKey;
    await eventually('host-b to be refused', () => refusals(lines, (l) => l.publicKey === bKey).length > 0);
    await appendFile(file, `${bKey}\n`);
    const c = client(broker);
    await eventually('host-b to register', async () => (await c.workers()).some((w) => w.pid === late.pid));
    process.kill(process.pid, 'SIGHUP');
    await eventually('the SIGHUP reload', () => lines.some((l) => l.msg === 'allowlist reloaded' && l.why === 'SIGHUP'));

    // Bad input: a broken line keeps the keys the broker had, and says where.
    await appendFile(file, 'not-a-key\n');
    process.kill(process.pid, 'SIGHUP');
    await eventually('the failed reload to be logged', () => lines.some((l) => l.msg === 'allowlist not reloaded; keeping the keys it had'));
    assert.equal((await c.workers()).length, 2);
  });

  it('on the client socket: allowlist admits listed keys only, curve admits any key (pyzmq, from docs/operations.md), plain stays plain', async () => {
    const clientsFile = join(dir.path, 'clients.txt');
    await writeFile(clientsFile, readKeyPair(key('client')).publicKey + '\n');
    const { broker, lines } = await curveBroker({ clientAuth: 'allowlist', authorizedClients: clientsFile });
    await keyedWorker(broker, 'host-a');
    const curve = { brokerKey: pub('broker'), clientAuth: 'allowlist' };
    assert.equal(String((await client(broker, { ...curve, curveKey: key('client') }).request('echo', [Buffer.from('listed')]))[0]), 'listed');
    assert.equal(await errorCode(client(broker, { ...curve, curveKey: key('stranger'), timeoutMs: 1000 }).request('echo', [Buffer.from('x')])), 'TIMEOUT');
    assert.equal(await errorCode(client(broker, { timeoutMs: 1000 }).request('echo', [Buffer.from('x')])), 'TIMEOUT');
    const strangerKey = readKeyPair(key('stranger')).publicKey;
    assert.equal(refusals(lines, (l) => l.socket === 'clients' && l.publicKey === strangerKey).length, 1, JSON.stringify(lines.filter((l) => l.msg === 'peer refused')));
    assert.equal(refusals(lines, (l) => l.socket === 'clients' && /handshake failed/.test(l.reason ?? '')).length, 1);
    assert.deepEqual(await client(broker, { ...curve, curveKey: key('client') }).requestJson<SecurityInfo>(MMI_SECURITY, []), { workers: 'curve', clients: 'allowlist', insecure: false });

    const open = await curveBroker({ clientAuth: 'curve' });
    await keyedWorker(open.broker, 'host-b');
    const operations = await readFile(join(REPO_ROOT, 'docs', 'operations.md'), 'utf8');
    const snippet = /<!-- pyzmq-curve-client[^]*?```python\n([^]*?)```/.exec(operations)?.[1];
    assert.ok(snippet, 'docs/operations.md has the pyzmq CURVE client');
    const { stdout } = await run(PYTHON, ['-c', snippet], { cwd: keys, env: { ...process.env, ZERVE_BROKER: open.broker.frontendEndpoint }, timeout: 20_000 });
    assert.equal(stdout.trim(), 'hello over CURVE');
    // Without --client-auth, a client with keys stays plain, and a plain client socket serves it.
    const plain = await curveBroker();
    await keyedWorker(plain.broker, 'host-a');
    assert.equal(String((await client(plain.broker, { brokerKey: pub('broker'), curveKey: key('client') }).request('echo', [Buffer.from('plain')]))[0]), 'plain');
  });

  it('answers bad key options with BAD_CONFIG and says what is wrong', async () => {
    const broker = (o: Partial<BrokerOptions>) => () => new Broker({ frontend: 'tcp://127.0.0.1:0', backend: 'tcp://127.0.0.1:0', ...o });
    assert.throws(broker({ curveKey: pub('broker') }), { code: 'BAD_CONFIG', message: /holds no secret-key: pass the \.key file/ });
    assert.throws(broker({ curveKey: key('broker'), authorizedWorkers: join(dir.path, 'missing') }), { code: 'BAD_CONFIG', message: /cannot read allowlist/ });
    assert.throws(broker({ curveKey: key('broker'), clientAuth: 'maybe' }), { code: 'BAD_CONFIG', message: /--client-auth must be one of plain, curve, allowlist/ });
    assert.throws(broker({ curveKey: key('broker'), clientAuth: 'allowlist' }), { code: 'BAD_CONFIG', message: /needs --authorized-clients/ });
    assert.throws(broker({ authorizedWorkers: allowed }), { code: 'BAD_CONFIG', message: /need the broker's --curve-key/ });
    const badList = join(dir.path, 'bad-list.txt');
    await writeFile(badList, 'hello\n');
    assert.throws(broker({ curveKey: key('broker'), authorizedWorkers: badList }), { code: 'BAD_CONFIG', message: /bad-list\.txt:1: not a CURVE public key/ });
    const broken = join(dir.path, 'broken.key');
    await writeFile(broken, 'curve\n    secret-key = "short"\n');
    assert.throws(broker({ curveKey: broken }), { code: 'BAD_CONFIG', message: /secret-key is not a CURVE key/ });
    assert.throws(() => new WorkerConnection(['echo'], async () => [], { brokerKey: pub('broker') }), { code: 'BAD_CONFIG', message: /--broker-key needs --curve-key/ });
    assert.throws(() => new ZerveClient({ brokerKey: join(dir.path, 'missing.pub'), clientAuth: 'curve' }), { code: 'BAD_CONFIG', message: /cannot read CURVE public key file/ });
    // Secure by default: checked before anything binds.
    assert.throws(broker({ backend: 'tcp://10.231.255.1:5556' }), { code: 'BAD_CONFIG', message: /refusing to start: the worker socket tcp:\/\/10\.231\.255\.1:5556 is reachable from other hosts and has no CURVE key/ });
    assert.doesNotThrow(broker({ backend: 'tcp://10.231.255.1:5556', insecure: true }));
  });

  it('logs a flood of refused peers at most 10 lines a second, counting the ones it left out, and a retrying peer once', () => {
    const { log, lines } = capturedLogger();
    let clock = 0;
    const refusals = new RefusalLog(log, 60_000, 10, () => clock);
    const strangers = Array.from({ length: 50 }, () => zmq.curveKeyPair().publicKey);
    // One burst, far quicker than a second: 50 strangers, and one of them retrying 20 times.
    for (const publicKey of strangers) refusals.refused({ socket: 'workers', reason: 'public key not in the allowlist', publicKey, address: '10.0.0.9' });
    for (let i = 0; i < 20; i++) refusals.refused({ socket: 'workers', reason: 'public key not in the allowlist', publicKey: strangers[0]!, address: '10.0.0.9' });
    assert.equal(lines.length, 10);
    assert.deepEqual(lines.map((l) => l.publicKey), strangers.slice(0, 10), 'each logged with its key');
    clock += 1100;
    refusals.refused({ socket: 'workers', reason: 'public key not in the allowlist', publicKey: strangers[49]!, address: '10.0.0.9' });
    refusals.refused({ socket: 'workers', reason: 'public key not in the allowlist', publicKey: strangers[0]!, address: '10.0.0.9' });
    assert.equal(lines.length, 11, 'the first peer, logged a moment ago, is not logged again');
    assert.equal(lines[10]!.publicKey, strangers[49]);
    assert.equal(lines[10]!.suppressed, 40, 'the next line counts the 40 strangers left out of the burst (a logged peer retrying is no news)');
  });

  it("releases a closed broker's ports after a CURVE worker connection in the same process closed (its handshake watch)", async () => {
    const { broker } = await curveBroker();
    const worker = new WorkerConnection(['echo.here'], async (frames) => frames, { connect: broker.backendEndpoint, heartbeatIntervalMs: TEST_HEARTBEAT_MS, curveKey: key('host-a'), brokerKey: pub('broker') });
    worker.start();
    await eventually('the keyed worker registers', async () => (await client(broker).workers()).length === 1);
    await worker.close();
    // Closing the watch before its socket once stopped the context's reaper: later closes kept their listeners.
    for (let i = 0; i < 2; i++) {
      const plain = await startBroker();
      const endpoint = plain.frontendEndpoint;
      await plain.close();
      // libzmq closes listeners on its own threads, a moment after close() returns.
      await eventually(`${endpoint} bound again`, async () => {
        const again = new zmq.Router({ linger: 0 });
        try {
          await again.bind(endpoint);
          return true;
        } finally {
          again.close();
        }
      }, 3000);
    }
  });

  it('shows --insecure in zerve status', async () => {
    const { broker } = await curveBroker({ curveKey: '', authorizedWorkers: '', insecure: true });
    const status = await runCli(['status', '--broker', broker.frontendEndpoint, '--timeout-ms', '20000'], TEST_ENV);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /WARNING: the broker runs with --insecure/);
    const json = JSON.parse((await runCli(['status', '--json', '--broker', broker.frontendEndpoint, '--timeout-ms', '20000'])).stdout) as { security: SecurityInfo };
    assert.deepEqual(json.security, { workers: 'plain', clients: 'plain', insecure: true });
  });
});
