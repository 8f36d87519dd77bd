import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { inferenceSizing, MAX_DEFAULT_THREADS_PER_WORKER } from '../scripts/inference-sizing.ts';
import { runCli } from './helpers/cluster.ts';

describe('inference sizing (zerve up defaults)', () => {
  it('gives one worker all the threads of a small machine', () => {
    assert.deepEqual(inferenceSizing(1), { workers: 1, threads: 1 });
    assert.deepEqual(inferenceSizing(2), { workers: 1, threads: 2 });
  });

  it('divides a bigger machine into workers of at most the thread cap, never more threads than cores', () => {
    for (const cores of [3, 4, 6, 8, 16, 64]) {
      const { workers, threads } = inferenceSizing(cores);
      assert.ok(threads <= MAX_DEFAULT_THREADS_PER_WORKER && threads >= 1, `${cores} cores: ${threads} threads`);
      assert.ok(workers * threads <= cores, `${cores} cores: ${workers} x ${threads}`);
      assert.ok(workers * threads > cores - threads, `${cores} cores: ${workers} x ${threads} leaves a worker's worth idle`);
    }
    assert.deepEqual(inferenceSizing(8), { workers: 2, threads: 4 });
  });

  it('is what `zerve up --help` says it defaults to on this machine', async () => {
    const { stdout } = await runCli(['up', '--help']);
    const { workers, threads } = inferenceSizing(availableParallelism());
    // Commander wraps long descriptions, so any run of white space matches a space.
    const said = (text: string) => new RegExp(text.replace(/[()]/g, '\\$&').replaceAll(' ', '\\s+'));
    assert.match(stdout, said(`inference worker processes (default: sized to the cores, ${workers} here)`));
    assert.match(stdout, said(`onnxruntime threads per inference worker (default: sized to the cores, ${threads} here)`));
  });
});
