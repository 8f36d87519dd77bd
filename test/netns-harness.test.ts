import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { eventually } from './helpers/eventually.ts';
import { NetnsLab, skipUnlessNetns } from './helpers/netns.ts';

const run = promisify(execFile);
const HELPER = new URL('./helpers/netns.ts', import.meta.url).href;

const namespacesOf = (pid: number) => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(`zt${pid}-`) || l.startsWith(`zt${pid}x`));

/** Whether `node` in `host` can open a TCP connection to `address:port` within a second. */
async function reaches(lab: NetnsLab, host: string, address: string, port: number): Promise<boolean> {
  const script = `const s = require('net').connect(${port}, '${address}'); s.on('connect', () => process.exit(0)); s.on('error', () => process.exit(1)); setTimeout(() => process.exit(1), 1000);`;
  return lab.exec(host, process.execPath, ['-e', script]).then(
    () => true,
    () => false,
  );
}

describe('network-namespace hosts (test harness)', function () {
  this.timeout(60_000);

  before(function () {
    skipUnlessNetns(this);
  });

  it('joins worker hosts to the broker host over their own links, cuts and restores a link, and removes everything at close', async () => {
    const lab = await NetnsLab.create(['a', 'b']);
    let closed = false;
    try {
      const [a, b] = [lab.host('a'), lab.host('b')];
      assert.match(lab.broker.address, /^10\.231\.\d+\.1$/);
      assert.notEqual(a.address, b.address);
      assert.notEqual(a.models, b.models);
      const server = lab.spawn(lab.broker, ['broker', '--frontend', lab.ipc('frontend'), '--backend', lab.tcp(lab.broker, 5556), '--insecure']);
      await eventually('the broker host to listen', () => reaches(lab, 'a', lab.broker.address, 5556));
      assert.ok(await reaches(lab, 'b', lab.broker.address, 5556));
      // The machine's own namespace has no route to the lab: nothing leaves the links the lab made.
      assert.equal((await run('ip', ['-o', 'addr'])).stdout.includes(lab.subnet + '.'), false);
      const { stdout: hostName } = await lab.exec('a', 'unshare', ['--uts', 'hostname']);
      assert.ok(hostName.length > 0);

      await lab.cut('a');
      assert.equal(await reaches(lab, 'a', lab.broker.address, 5556), false, 'host A is cut off');
      assert.ok(await reaches(lab, 'b', lab.broker.address, 5556), 'host B is not');
      await lab.restore('a');
      assert.ok(await reaches(lab, 'a', lab.broker.address, 5556), 'host A is back');

      await lab.close();
      closed = true;
      assert.deepEqual(namespacesOf(process.pid), []);
      assert.equal(existsSync(lab.dir), false);
      assert.notEqual(server.child.exitCode ?? server.child.signalCode, null, "the lab's processes were killed");
      await lab.close(); // idempotent
    } finally {
      if (!closed) await lab.close();
    }
  });

  it('removes its namespaces when the process exits without close, and those of a SIGKILLed run at the next create', async () => {
    const script = `import { NetnsLab } from '${HELPER}'; await NetnsLab.create(['a']); process.stdout.write('ready\\n'); if (process.env.LAB_MODE === 'exit') process.exit(0); else setInterval(() => {}, 1000);`;
    for (const mode of ['exit', 'kill']) {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, LAB_MODE: mode } });
      const exited = once(child, 'exit');
      await new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()));
      if (mode === 'kill') {
        assert.equal(namespacesOf(child.pid!).length, 2, 'a broker host and host a');
        child.kill('SIGKILL');
      }
      await exited;
      if (mode === 'exit') {
        assert.deepEqual(namespacesOf(child.pid!), [], 'the exit handler removed them');
      } else {
        assert.equal(namespacesOf(child.pid!).length, 2, 'SIGKILL runs no handler');
        const next = await NetnsLab.create(['a']);
        await next.close();
        assert.deepEqual(namespacesOf(child.pid!), [], 'the next create removed them');
      }
    }
  });
});
