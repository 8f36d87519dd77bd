import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as zmq from 'zeromq';
import { freePort } from './helpers/free-port.ts';
import { ZerveClient } from '../shared/client.ts';
import { MDPC01, MDPC02, MDPW01, MDPW02 } from '../shared/protocol.ts';
import { CliProcess, TEST_ENV } from './helpers/cluster.ts';

const FRAMES = 100_000;
/** How often the broker under test trims its malloc arenas (the default is 10 s; shorter keeps the test short). */
const TRIM_INTERVAL_MS = 1000;
const MEMORY_PROBE = fileURLToPath(new URL('./fixtures/memory-probe.mjs', import.meta.url));

/** Resident set size of a process, from /proc. */
function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(match, 'VmRSS in /proc');
  return Number(match[1]) * 1024;
}

interface Memory {
  rss: number;
  /** V8 heap in use plus memory held by JS objects outside it (Buffers), after a full GC. */
  held: number;
}

/**
 * The broker's memory once settled: a full GC (test/fixtures/memory-probe.mjs), then time for a malloc
 * trim, then RSS from /proc. Before and after are measured alike, so neither has garbage the other has not.
 */
async function settledMemory(broker: CliProcess): Promise<Memory> {
  const mark = broker.stderr.length;
  process.kill(broker.pid, 'SIGUSR2');
  let line: string | undefined;
  for (let i = 0; i < 500 && !line; i++) {
    await new Promise((r) => setTimeout(r, 10));
    line = /^MEMORY (.*)$/m.exec(broker.stderr.slice(mark))?.[1];
  }
  assert.ok(line, `the broker's memory probe answered: ${broker.stderr.slice(-2000)}`);
  const { heapUsed, external } = JSON.parse(line) as { heapUsed: number; external: number };
  await new Promise((r) => setTimeout(r, 2 * TRIM_INTERVAL_MS));
  return { rss: rssBytes(broker.pid), held: heapUsed + external };
}

/** A seeded generator (mulberry32), so a failing run can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * One hostile message: random frames after a plausible or random header: made-up service names
 * (printable or not, long or short), deadlines of 1e18, READYs for junk services, replies from
 * strangers, and now and then a frame of 256 KiB to 2 MiB.
 */
function hostileMessage(rand: () => number): Buffer[] {
  const bytes = (n: number) => {
    const buffer = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) buffer[i] = (rand() * 256) | 0;
    return buffer;
  };
  const junkName = () => (rand() < 0.5 ? `junk.${Math.floor(rand() * 1e9).toString(36)}` : bytes(1 + Math.floor(rand() * 300)).toString('latin1'));
  const large = () => Buffer.alloc(256 * 1024 + Math.floor(rand() * (2 * 1024 - 256) * 1024), 0x5a);
  const body = () => {
    const frames: Buffer[] = [Buffer.from(JSON.stringify({ deadlineMs: 1e18 }))];
    if (rand() < 0.003) frames.push(large());
    else frames.push(bytes(Math.floor(rand() * 200)));
    return frames;
  };
  switch (Math.floor(rand() * 6)) {
    case 0:
      return [MDPC02, Buffer.from([0x01]), Buffer.from(junkName(), 'latin1'), ...body()];
    case 1:
      return [Buffer.alloc(0), MDPC01, Buffer.from(junkName(), 'latin1'), ...body()];
    case 2:
      return [MDPW02, Buffer.from([1 + Math.floor(rand() * 8)]), Buffer.from(junkName(), 'latin1'), ...body()];
    case 3:
      return [Buffer.alloc(0), MDPW01, Buffer.from([Math.floor(rand() * 8)]), bytes(5), Buffer.alloc(0), ...body()];
    case 4:
      return rand() < 0.01 ? [large()] : [bytes(Math.floor(rand() * 64))];
    default:
      return Array.from({ length: 1 + Math.floor(rand() * 6) }, () => bytes(Math.floor(rand() * 32)));
  }
}

describe('broker under fuzzed frames', function () {
  this.timeout(240_000);
  let broker: CliProcess | undefined;
  let worker: CliProcess | undefined;
  let client: ZerveClient | undefined;
  const sockets: zmq.Dealer[] = [];

  afterEach(async () => {
    sockets.splice(0).forEach((s) => s.close());
    await client?.close();
    await worker?.kill();
    await broker?.kill();
  });

  it(`keeps serving, leaves no junk entry, and its RSS and its heap + external memory (each after a full GC and a malloc trim) return to within 10% after ${FRAMES.toLocaleString('en-US')} fuzzed messages, large ones included`, async () => {
    const frontend = `tcp://127.0.0.1:${await freePort()}`;
    const backend = `tcp://127.0.0.1:${await freePort()}`;
    // Its own process, so RSS is the broker's; junk waits at most 2 s instead of the default hour.
    // Default heartbeats: the tests' 200 ms would drop the echo worker whenever this busy machine stalls a
    // process. The memory probe lets the test collect the broker's garbage before each measure.
    const env = { ...TEST_ENV, ZERVE_HEARTBEAT_INTERVAL_MS: '1000' };
    const brokerEnv = { ...env, ZERVE_MEMORY_TRIM_INTERVAL_MS: String(TRIM_INTERVAL_MS), NODE_OPTIONS: `--expose-gc --import ${MEMORY_PROBE}` };
    broker = new CliProcess(['broker', '--frontend', frontend, '--backend', backend, '--max-deadline-ms', '=2000'], brokerEnv);
    worker = new CliProcess(['worker', 'echo', '--connect', backend, '--capacity', '8'], env);
    client = new ZerveClient({ broker: frontend, timeoutMs: 5000 });
    const echo = async (n: number) => {
      for (let i = 0; i < n; i++) assert.equal(String((await client!.request('echo', [Buffer.from(`ok ${i}`)]))[0]), `ok ${i}`);
    };
    for (let i = 0; ; i++) {
      if ((await client.services().catch(() => [])).some((s) => s.name === 'echo' && s.workers > 0)) break;
      if (i > 300) throw new Error(`no echo worker: ${broker.stderr} ${worker.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await echo(2000); // warm: JIT, socket buffers
    const before = await settledMemory(broker);
    let peak = rssBytes(broker.pid);

    const rand = random(0x5eed);
    const fuzzers = Array.from({ length: 8 }, (_, i) => {
      const socket = new zmq.Dealer({ linger: 0, receiveHighWaterMark: 1000 });
      socket.connect(i % 2 === 0 ? frontend : backend);
      sockets.push(socket);
      // Reads whatever comes back (errors, DISCONNECTs), as a real peer's socket would.
      void (async () => {
        try {
          for await (const _ of socket);
        } catch {
          // closed
        }
      })();
      return socket;
    });
    for (let i = 0; i < FRAMES; i++) {
      await fuzzers[i % fuzzers.length]!.send(hostileMessage(rand));
      if (i % 5000 === 0) {
        peak = Math.max(peak, rssBytes(broker.pid));
        await echo(1); // still serving mid-flood
      }
    }
    await echo(100);

    // Junk expires within its 2 s cap; its entries go; memory comes back.
    const within = (m: Memory) => m.rss <= before.rss * 1.1 && m.held <= before.held * 1.1;
    let after = await settledMemory(broker);
    for (let i = 0; i < 20 && !within(after); i++) {
      await echo(20); // ordinary traffic in between, as in use
      after = await settledMemory(broker);
    }
    const services = (await client.services()).map((s) => s.name);
    assert.deepEqual(services, ['echo'], 'no junk service entry is left');
    const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
    const report = `RSS ${mb(before.rss)} MB before, peak ${mb(peak)} MB, ${mb(after.rss)} MB after; heap + external ${mb(before.held)} MB before, ${mb(after.held)} MB after`;
    assert.ok(within(after), report);
    assert.ok(broker.child.exitCode === null, 'the broker is still running');
    process.stderr.write(`      broker ${report}\n`);
  });
});
