import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from './helpers/free-port.ts';
import { DEBIAN_PYTHON, ZGUIDE_PYTHON_DIR, buildZguideReference, type ZguideProgram } from '../scripts/zguide-reference.ts';
import { ZerveClient } from '../shared/client.ts';
import { CliProcess, TEST_ENV, tempDir } from './helpers/cluster.ts';

const run = promisify(execFile);
/** This repository's own test fixtures (not the provided ../shared/fixtures). */
const LOCAL_FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const REQUESTS = 100_000;

/** A program's exit and output; `checked` is what the reply check (LD_PRELOAD or Python wrapper) counted. */
interface ClientRun {
  code: number | null;
  stdout: string;
  echoed: number;
  unexpected: number;
}

async function runToEnd(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<ClientRun> {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const [code] = (await once(child, 'exit')) as [number | null];
  const checked = /checked (\d+) echoed (\d+) unexpected/.exec(stdout);
  if (!checked) throw new Error(`${path.basename(args[1] ?? command)} exited ${code} without the reply check's line: ${stdout.slice(-2000)} ${stderr}`);
  return { code, stdout, echoed: Number(checked[1]), unexpected: Number(checked[2]) };
}

/**
 * A `zerve broker` process (its own CPU, apart from this test's) with the Guide's heartbeat of 2.5 s, and a
 * worker for `echo`. The Guide's clients send no deadline and its broker keeps a request until it is
 * answered; 100,000 requests through one worker can take longer than the 30 s default on a loaded
 * machine, so these brokers give plain requests 10 minutes.
 */
async function startBrokerWithWorker(worker: (backend: string) => ReturnType<typeof spawn>) {
  const frontend = `tcp://127.0.0.1:${await freePort()}`;
  const backend = `tcp://127.0.0.1:${await freePort()}`;
  const broker = new CliProcess(['broker', '--frontend', frontend, '--backend', backend, '--heartbeat-interval-ms', '2500'], {
    ...TEST_ENV,
    ZERVE_HEARTBEAT_INTERVAL_MS: '2500',
    ZERVE_DEFAULT_DEADLINE_MS: '600000',
  });
  const echo = worker(backend);
  const client = new ZerveClient({ broker: frontend, timeoutMs: 2000 });
  try {
    // The reference clients give up after 2.5 s without a reply: start them once `echo` has its worker.
    for (let i = 0; ; i++) {
      const answer = await client.request('mmi.service', [Buffer.from('echo')]).catch(() => undefined);
      if (answer && String(answer[0]) === '200') break;
      if (i > 150 || echo.exitCode !== null) throw new Error(`no echo worker registered at ${backend}: ${broker.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await client.close();
  }
  return {
    frontend,
    async close() {
      if (echo.exitCode === null && echo.signalCode === null) {
        echo.kill('SIGKILL');
        await once(echo, 'exit');
      }
      await broker.kill('SIGTERM');
    },
  };
}

describe("the ZeroMQ Guide's reference Majordomo programs against our broker", function () {
  this.timeout(900_000);
  let c: Promise<ClientRun[]> | undefined;
  let python: Promise<ClientRun[]> | undefined;
  let remove: (() => Promise<void>) | undefined;

  before(async function () {
    const build = await buildZguideReference();
    const pythonZmq = await run(DEBIAN_PYTHON, ['-c', 'import zmq']).then(() => true, () => false);
    if ('missing' in build || !pythonZmq) {
      const why = 'missing' in build ? build.missing : `${DEBIAN_PYTHON} has no zmq (apt-get install -y python3-zmq)`;
      if (process.env.CI) throw new Error(`CI must run the interoperability tests (.ci/run installs their packages): ${why}`);
      this.skip();
      return;
    }
    const dir = await tempDir('zerve-zguide-check-');
    remove = dir.remove;
    const checker = path.join(dir.path, 'zguide-reply-check.so');
    await run('gcc', ['-O2', '-shared', '-fPIC', '-o', checker, path.join(LOCAL_FIXTURES, 'zguide-reply-check.c'), '-lczmq', '-ldl']);

    // All four clients at once, each with its own broker and worker processes: the one-at-a-time clients
    // wait on round trips and leave the cores idle most of the time, so running them beside the
    // pipelined ones costs little and the file takes as long as its slowest client, not the sum.
    const alone = async (worker: (backend: string) => ReturnType<typeof spawn>, client: (frontend: string) => Promise<ClientRun>) => {
      const cluster = await startBrokerWithWorker(worker);
      try {
        return await client(cluster.frontend);
      } finally {
        await cluster.close();
      }
    };
    const cClient = (program: ZguideProgram) => (endpoint: string) =>
      runToEnd(build.path(program), [], { ...process.env, MDP_ENDPOINT: endpoint, LD_PRELOAD: checker });
    const cWorker = (backend: string) => spawn(build.path('mdworker'), [], { env: { ...process.env, MDP_ENDPOINT: backend }, stdio: 'ignore' });
    c = Promise.all([alone(cWorker, cClient('mdclient2')), alone(cWorker, cClient('mdclient'))]);
    const wrapper = path.join(LOCAL_FIXTURES, 'zguide-run.py');
    const pyClient = (script: string) => (endpoint: string) => runToEnd(DEBIAN_PYTHON, [wrapper, ZGUIDE_PYTHON_DIR, script, endpoint], process.env);
    const pyWorker = (backend: string) => spawn(DEBIAN_PYTHON, [wrapper, ZGUIDE_PYTHON_DIR, 'mdworker.py', backend], { stdio: 'ignore' });
    python = Promise.all([alone(pyWorker, pyClient('mdclient2.py')), alone(pyWorker, pyClient('mdclient.py'))]);
    // Each `it` reports its own pair; neither failure may go unhandled while the other runs.
    c.catch(() => undefined);
    python.catch(() => undefined);
  });

  after(async () => {
    await Promise.allSettled([c, python]);
    await remove?.();
  });

  it('the C mdworker echoes all 100,000 requests of mdclient2 (sent at once) and of mdclient (one at a time), every reply checked', async () => {
    const [pipelined, oneByOne] = await c!;
    assert.match(pipelined!.stdout, new RegExp(`^${REQUESTS} replies received$`, 'm'));
    assert.deepEqual([pipelined!.code, pipelined!.echoed, pipelined!.unexpected], [0, REQUESTS, 0], `mdclient2 (no OVERLOADED, no TIMEOUT): ${pipelined!.stdout.slice(-600)}`);
    assert.match(oneByOne!.stdout, new RegExp(`^${REQUESTS} requests/replies processed$`, 'm'));
    assert.deepEqual([oneByOne!.code, oneByOne!.echoed, oneByOne!.unexpected], [0, REQUESTS, 0], `mdclient: ${oneByOne!.stdout.slice(-600)}`);
  });

  it('the Python mdworker echoes all 100,000 requests of mdclient2.py and of mdclient.py, every reply checked', async () => {
    const [pipelined, oneByOne] = await python!;
    assert.match(pipelined!.stdout, new RegExp(`^${REQUESTS} requests/replies processed$`, 'm'));
    assert.deepEqual([pipelined!.code, pipelined!.echoed, pipelined!.unexpected], [0, REQUESTS, 0], `mdclient2.py: ${pipelined!.stdout.slice(-600)}`);
    assert.match(oneByOne!.stdout, new RegExp(`^${REQUESTS} requests/replies processed$`, 'm'));
    assert.deepEqual([oneByOne!.code, oneByOne!.echoed, oneByOne!.unexpected], [0, REQUESTS, 0], `mdclient.py: ${oneByOne!.stdout.slice(-600)}`);
  });
});
