import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Broker } from '../broker/broker.ts';
import { buildZguideReference, type ZguideBuild } from '../scripts/zguide-reference.ts';
import { ZerveClient } from '../shared/client.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { nextWorker, startBroker, tempDir } from './helpers/cluster.ts';

const run = promisify(execFile);
const LOCAL_FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
/** What the Guide's mdclient2 sends, fixed in its source. */
const REQUESTS = 100_000;
/** The Guide's heartbeat. */
const HEARTBEAT_MS = 2500;

describe("the ZeroMQ Guide's C Majordomo programs on one broker of two", function () {
  this.timeout(600_000);
  let build: Extract<ZguideBuild, { dir: string }>;
  let checker: string;
  let removeDir: (() => Promise<void>) | undefined;
  const closers: Array<() => Promise<unknown>> = [];

  before(async function () {
    const built = await buildZguideReference();
    if ('missing' in built) {
      if (process.env.CI) throw new Error(`CI must run the interoperability tests (.ci/run installs their packages): ${built.missing}`);
      this.skip();
      return;
    }
    build = built;
    const dir = await tempDir('zerve-zguide-brokers-');
    removeDir = dir.remove;
    checker = path.join(dir.path, 'zguide-reply-check.so');
    await run('gcc', ['-O2', '-shared', '-fPIC', '-o', checker, path.join(LOCAL_FIXTURES, 'zguide-reply-check.c'), '-lczmq', '-ldl']);
  });

  after(async () => {
    await removeDir?.();
  });

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  /** Runs one of the Guide's C clients to its end; the LD_PRELOAD'ed check counts the echoes among its replies. */
  async function runClient(program: 'mdclient' | 'mdclient2', endpoint: string) {
    const child = spawn(build.path(program), [], { env: { ...process.env, MDP_ENDPOINT: endpoint, LD_PRELOAD: checker }, stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    const checked = /checked (\d+) echoed (\d+) unexpected/.exec(stdout);
    assert.ok(checked, `${program} exited ${code} without the reply check's line: ${stdout.slice(-2000)}`);
    return { code, stdout, echoed: Number(checked[1]), unexpected: Number(checked[2]) };
  }

  it('mdworker and mdclient2 pointed at broker 2 exchange all their echoes beside a Zerve worker and client on both brokers', async () => {
    // The Guide's clients send no deadline and its broker keeps a request until answered: give plain requests 10 minutes.
    const brokers: Broker[] = [];
    for (let i = 0; i < 2; i++) {
      const broker = await startBroker({ heartbeatIntervalMs: HEARTBEAT_MS, defaultDeadlineMs: 600_000 });
      brokers.push(broker);
      closers.push(() => broker.close());
    }
    const [b1, b2] = brokers as [Broker, Broker];

    let zerveHandled = 0;
    const zerveOnBoth = Promise.all([nextWorker(b1), nextWorker(b2)]);
    const zerve = new WorkerConnection(['echo'], async (body) => (zerveHandled++, body), {
      connect: `${b1.backendEndpoint},${b2.backendEndpoint}`,
      capacity: 2,
      heartbeatIntervalMs: HEARTBEAT_MS,
    });
    closers.push(() => zerve.close());
    zerve.start();
    await zerveOnBoth;

    const guideWorker = nextWorker(b2, (w) => w.protocol === 'MDP/0.1');
    const mdworker: ChildProcess = spawn(build.path('mdworker'), [], { env: { ...process.env, MDP_ENDPOINT: b2.backendEndpoint }, stdio: 'ignore' });
    closers.push(async () => {
      if (mdworker.exitCode === null && mdworker.signalCode === null) {
        mdworker.kill('SIGKILL');
        await once(mdworker, 'exit');
      }
    });
    await guideWorker;

    // A Zerve client spreads its requests over both brokers meanwhile.
    const client = new ZerveClient({ broker: `${b1.frontendEndpoint},${b2.frontendEndpoint}`, timeoutMs: 600_000, heartbeatIntervalMs: HEARTBEAT_MS });
    closers.push(() => client.close());
    const zerveReplies = Promise.all(Array.from({ length: 200 }, (_, i) => client.request('echo', [Buffer.from(`zerve ${i}`)])));

    // mdclient2 sends all its requests at once through broker 2. (mdclient's 100,000 one-at-a-time round
    // trips add half a minute and nothing the pipelined run does not show; zguide-interop runs it.)
    const pipelined = await runClient('mdclient2', b2.frontendEndpoint);
    assert.match(pipelined.stdout, new RegExp(`^${REQUESTS} replies received$`, 'm'));
    assert.deepEqual([pipelined.code, pipelined.echoed, pipelined.unexpected], [0, REQUESTS, 0], `mdclient2: ${pipelined.stdout.slice(-600)}`);

    const replies = await zerveReplies;
    assert.deepEqual(replies.map((r) => String(r[0])), Array.from({ length: 200 }, (_, i) => `zerve ${i}`));
    assert.ok(zerveHandled < REQUESTS, `the Guide's mdworker answered part of the echoes (Zerve's worker ran ${zerveHandled})`);
    assert.ok(client.brokers.every((b) => b.replies > 0), `the Zerve client's replies came through both brokers: ${JSON.stringify(client.brokers)}`);
  });
});
