import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import type { ErrorCode } from '../shared/errors.ts';
import { encodeHeader, type ClassifyReply } from '../shared/messages.ts';
import { classifyService } from '../shared/protocol.ts';
import { CliProcess, TEST_ENV, fixtureImage, runCli, spawnWorker, startBroker } from './helpers/cluster.ts';
import { errorCode } from './helpers/error-code.ts';
import { eventually } from './helpers/eventually.ts';
import { image, makeRepository, pngBomb } from './fixtures/inference-models.ts';

const MAX_IMAGE_BYTES = 1_000_000;


describe('cluster classification (broker + inference worker processes)', function () {
  let models: string;
  let broker: Broker;
  let client: ZerveClient;
  const processes: CliProcess[] = [];

  before(async () => {
    models = await makeRepository();
  });

  after(async () => {
    await rm(models, { recursive: true, force: true });
  });

  // One broker per describe, not per test: a worker process loads three ONNX sessions (1.5-2 s of CPU)
  // and the one-worker tests leave it as they found it, so they share one.
  async function startCluster(): Promise<void> {
    broker = await startBroker({ defaultDeadlineMs: 15_000 });
    client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 15_000 });
  }

  async function stopCluster(): Promise<void> {
    await client.close();
    await Promise.all(processes.splice(0).map((p) => p.kill()));
    await broker.close();
  }

  /** Starts an inference worker process over the test repository. */
  async function inferenceWorker(...extra: string[]): Promise<CliProcess> {
    const env = { ...TEST_ENV, ZERVE_MAX_IMAGE_BYTES: String(MAX_IMAGE_BYTES) };
    const worker = await spawnWorker(broker, ['inference', '--models', models, ...extra], (w) => w.services.length > 1, env);
    processes.push(worker);
    return worker;
  }

  describe('with one worker', () => {
    before(async () => {
      await startCluster();
      await inferenceWorker();
    });
    after(stopCluster);

    it('classifies kitten.png as a tabby cat', async () => {
      const reply = await client.classify('squeezenet', image('kitten.png'), { topk: 3 });
      assert.equal(reply.model, 'squeezenet');
      assert.equal(reply.version, '1');
      assert.equal(reply.predictions.length, 3);
      assert.equal(reply.predictions[0]!.index, 281);
      assert.equal(reply.predictions[0]!.label, 'tabby, tabby cat');
      assert.ok(reply.predictions[0]!.probability > 0.8);
      assert.ok(reply.timings.totalMs! > 0);
    });

    it('classifies digit.png as 8 with the mnist model', async () => {
      const reply = await client.classify('mnist', image('digit.png'));
      assert.equal(reply.predictions[0]!.label, '8');
    });

    it('gets the same top-1 from the float16 and float32 squeezenet', async () => {
      for (const name of ['kitten.png', 'fish.png', 'kitten-1600.jpg']) {
        const [fp16, fp32] = await Promise.all([
          client.classify('squeezenet', image(name)),
          client.classify('squeezenet-fp32', image(name)),
        ]);
        assert.equal(fp16.predictions[0]!.index, fp32.predictions[0]!.index, name);
      }
    });

    it('accepts a msgpack header', async () => {
      const [frame] = await client.request(classifyService('squeezenet'), [encodeHeader({ topk: 1 }, 'msgpack'), image('kitten.png')]);
      const reply = JSON.parse(frame!.toString()) as ClassifyReply;
      assert.equal(reply.predictions.length, 1);
      assert.equal(reply.predictions[0]!.index, 281);
    });

    it('answers each bad input with its code, and the next good request still succeeds', async () => {
      const kitten = image('kitten.png');
      const bad: Array<[string, Buffer[], ErrorCode]> = [
        ['corrupt bytes', [Buffer.from('{}'), Buffer.from(kitten.subarray(0, 100)).fill(7, 20)], 'BAD_IMAGE'],
        ['truncated PNG', [Buffer.from('{}'), kitten.subarray(0, kitten.length / 2)], 'BAD_IMAGE'],
        ['a text file', [Buffer.from('{}'), Buffer.from('this is not an image\n'.repeat(20))], 'BAD_IMAGE'],
        ['an empty image frame', [Buffer.from('{}'), Buffer.alloc(0)], 'BAD_IMAGE'],
        ['a 30000x30000 PNG bomb', [Buffer.from('{}'), pngBomb(30_000, 30_000)], 'IMAGE_TOO_LARGE'],
        ['an image over the byte limit', [Buffer.from('{}'), Buffer.concat([kitten, Buffer.alloc(MAX_IMAGE_BYTES)])], 'IMAGE_TOO_LARGE'],
        ['an unknown version', [Buffer.from('{"version":"99"}'), kitten], 'UNKNOWN_MODEL'],
        ['a header that is neither JSON nor msgpack', [Buffer.from('topk=3'), kitten], 'BAD_REQUEST'],
        ['a missing image frame', [Buffer.from('{}')], 'BAD_REQUEST'],
        ['no frames at all', [], 'BAD_REQUEST'],
        ['a bad topk', [Buffer.from('{"topk":-1}'), kitten], 'BAD_REQUEST'],
      ];
      for (const [what, body, code] of bad) {
        assert.equal(await errorCode(client.requestJson(classifyService('squeezenet'), body)), code, what);
        const good = await client.classify('squeezenet', kitten, { topk: 1 });
        assert.equal(good.predictions[0]!.index, 281, `good request after ${what}`);
      }
    });

    it('answers NO_WORKERS for an unknown model once its deadline passes', async () => {
      assert.equal(await errorCode(client.classify('no-such-model', image('kitten.png'), { deadlineMs: 200 })), 'NO_WORKERS');
    });

    it('prints a table, JSON lines and the status through the CLI', async () => {
      const env = { ...TEST_ENV, ZERVE_BROKER: broker.frontendEndpoint };
      const table = await runCli(['classify', '--model', 'squeezenet', '--topk', '2', fixtureImage('kitten.png')], env);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /tabby, tabby cat/);
      const json = await runCli(['classify', '--json', '--model', 'mnist', fixtureImage('digit.png'), fixtureImage('kitten.png')], env);
      const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as ClassifyReply);
      // One JSON line per file, in order; the mnist model has no labels file, so labels are class indices.
      assert.deepEqual(lines.map((l) => (l as ClassifyReply & { file: string }).file), [fixtureImage('digit.png'), fixtureImage('kitten.png')]);
      assert.equal(lines[0]!.predictions[0]!.label, '8');
      assert.match(lines[1]!.predictions[0]!.label, /^\d$/);
      const status = await runCli(['status', '--json'], env);
      const parsed = JSON.parse(status.stdout) as { workers: Array<{ kind: string; host: string; pid: number }> };
      // The worker process also has a connection of kind `models` (its model holder): find the inference one.
      const inference = parsed.workers.find((w) => w.kind === 'inference');
      assert.ok(inference, 'an inference worker is listed');
      assert.ok(inference.pid > 0);
    });
  });

  describe('with two workers', () => {
    before(startCluster);
    after(stopCluster);

    it('spreads requests over both and answers every request when one is SIGKILLed', async () => {
      const first = await inferenceWorker('--capacity', '4');
      await inferenceWorker('--capacity', '4');
      const pids = new Set<number>();
      const sampler = setInterval(async () => {
        for (const w of await client.workers().catch(() => [])) if (w.inFlight > 0 && w.pid) pids.add(w.pid);
      }, 10);
      const requests = Array.from({ length: 40 }, () => client.classify('squeezenet-fp32', image('kitten-1600.jpg'), { topk: 1 }));
      await eventually('requests served by both workers', () => pids.size >= 2, 30_000, 10);
      await first.kill('SIGKILL');
      const replies = await Promise.all(requests);
      clearInterval(sampler);
      for (const reply of replies) {
        assert.equal(reply.model, 'squeezenet-fp32');
        assert.deepEqual(reply.predictions.map((p) => [p.index, p.label]), [[281, 'tabby, tabby cat']]);
      }
    });
  });
});
