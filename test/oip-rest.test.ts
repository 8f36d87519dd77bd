import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import type { Broker } from '../broker/broker.ts';
import { ZerveClient } from '../shared/client.ts';
import type { ErrorCode } from '../shared/errors.ts';
import type { InferReplyHeader } from '../shared/infer-messages.ts';
import { decodeHeader, decodeReply, encodeHeader, type WorkerInfo } from '../shared/messages.ts';
import { WebApp } from '../webapp/web-app.ts';
import { float32ToFloat16 } from '../shared/float16.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { CliProcess, fixtureImage, nextWorker, spawnWorker, startBroker } from './helpers/cluster.ts';
import { OIP_ENV, OIP_HEARTBEAT_MS, squeezenetPairRepository, squeezenetTensor, startOipCluster, type OipCluster } from './fixtures/oip-cluster.ts';
import { call, checkResponse } from './fixtures/webapp-openapi-check.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';
import { argmax } from '../shared/argmax.ts';

const kitten = readFileSync(fixtureImage('kitten.png'));
const fish = readFileSync(fixtureImage('fish.png'));
const bigKitten = readFileSync(fixtureImage('kitten-1600.jpg'));
const TABBY = 281;
const TENCH = 0;

interface InferAnswer {
  status: number;
  headers: Headers;
  json: any;
  /** The binary section, when the answer has one. */
  binary?: Buffer;
}

/** Triton's BYTES serialization, written here independently of the codec: 4-byte LE length, then the bytes. */
function bytesTensor(elements: Buffer[]): Buffer {
  return Buffer.concat(elements.flatMap((e) => [Buffer.from(new Uint32Array([e.length]).buffer), e]));
}

function parseBytesTensor(raw: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at < raw.length; ) {
    const length = raw.readUInt32LE(at);
    out.push(raw.subarray(at + 4, at + 4 + length).toString());
    at += 4 + length;
  }
  return out;
}

function floatBytes(values: Float32Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
}

/** POST .../infer: JSON alone, or JSON and binary data with Inference-Header-Content-Length; the answer is checked against the OpenAPI document. */
async function infer(base: string, path: string, request: unknown, binaries: Buffer[] = [], init: RequestInit = {}): Promise<InferAnswer> {
  const json = Buffer.from(typeof request === 'string' ? request : JSON.stringify(request));
  const headers: Record<string, string> = binaries.length > 0 ? { 'Inference-Header-Content-Length': String(json.length) } : {};
  const response = await fetch(new URL(path, base), {
    method: 'POST',
    body: new Uint8Array(Buffer.concat([json, ...binaries])),
    headers,
    ...init,
  });
  const body = Buffer.from(await response.arrayBuffer());
  const type = response.headers.get('content-type');
  const headerLength = response.headers.get('inference-header-content-length');
  const text = headerLength === null ? body : body.subarray(0, Number(headerLength));
  const answer: InferAnswer = { status: response.status, headers: response.headers, json: JSON.parse(text.toString()) };
  if (headerLength !== null) answer.binary = body.subarray(Number(headerLength));
  checkResponse('POST', path, response.status, headerLength === null ? type : 'application/json', answer.json);
  return answer;
}

function assertOipError(answer: { status: number; headers: Headers; json?: any; body?: any }, status: number, code: ErrorCode): void {
  const body = answer.json ?? answer.body;
  assert.equal(answer.status, status, JSON.stringify(body));
  assert.equal(typeof body.error, 'string', 'the protocol error body: {"error": "message"}');
  assert.ok(body.error.length > 0);
  assert.equal(body.code, code, JSON.stringify(body));
  if (status === 503) assert.match(answer.headers.get('retry-after') ?? '', /^\d+$/, 'a 503 carries Retry-After');
}

const imageRequest = (images: Buffer[]) => ({
  inputs: [{ name: 'data_0', datatype: 'BYTES', shape: [images.length], parameters: { binary_data_size: bytesTensor(images).length } }],
});

describe('Open Inference Protocol (v2) REST', function () {
  this.timeout(60_000);
  let cluster: OipCluster;
  let url: string;
  let kittenTensor: Float32Array;
  let fishTensor: Float32Array;
  let extra: WebApp | undefined;
  let extraBroker: Broker | undefined;
  let extraWorker: WorkerConnection | undefined;

  // One cluster for the suite: tests only read from it; those that need other options start their own parts.
  before(async () => {
    cluster = await startOipCluster();
    url = cluster.url;
    [kittenTensor, fishTensor] = await Promise.all([squeezenetTensor(kitten), squeezenetTensor(fish)]);
  });
  after(async () => {
    await cluster?.close();
  });
  afterEach(async () => {
    await extra?.close();
    await extraWorker?.close();
    await extraBroker?.close();
    extra = undefined;
    extraWorker = undefined;
    extraBroker = undefined;
  });

  describe('health and metadata', () => {
    it('is live, ready, and names itself with its extensions', async () => {
      assert.deepEqual((await call(url, '/v2/health/live')).body, { live: true });
      const ready = await call(url, '/v2/health/ready');
      assert.equal(ready.status, 200);
      assert.equal(ready.body.ready, true);
      const server = await call(url, '/v2');
      assert.equal(server.body.name, 'zerve');
      assert.match(server.body.version, /^\d+\.\d+\.\d+/);
      assert.deepEqual(server.body.extensions, ['binary_tensor_data', 'classification']);
    });

    it('is not ready (503, Retry-After) while the broker answers but no worker serves a model', async () => {
      extraBroker = await startBroker({ heartbeatIntervalMs: OIP_HEARTBEAT_MS });
      extra = new WebApp({ broker: extraBroker.frontendEndpoint, http: 0, probeTimeoutMs: 2000 }, testLogger);
      const base = await extra.start();
      const ready = await call(base, '/v2/health/ready');
      assert.equal(ready.status, 503);
      assert.equal(ready.body.ready, false);
      assert.equal(ready.body.code, 'NO_WORKERS');
      assert.match(ready.headers.get('retry-after') ?? '', /^\d+$/);
      assert.equal((await call(base, '/v2/health/live')).status, 200, 'live all the same');
      assertOipError(await infer(base, '/v2/models/squeezenet/infer', imageRequest([kitten]), [bytesTensor([kitten])]), 503, 'NO_WORKERS');
    });

    it('is not ready while the broker does not answer', async () => {
      extra = new WebApp({ broker: 'tcp://127.0.0.1:1', http: 0, probeTimeoutMs: 200 }, testLogger);
      const ready = await call(await extra.start(), '/v2/health/ready');
      assert.equal(ready.status, 503);
      assert.equal(ready.body.code, 'TIMEOUT');
    });

    it('describes each model as its ONNX file states it: FP16 with batch 1, FP32 with a dynamic batch (-1)', async () => {
      const fp16 = await call(url, '/v2/models/squeezenet');
      assert.deepEqual(fp16.body, {
        name: 'squeezenet',
        versions: ['1'],
        platform: 'onnxruntime_onnx',
        inputs: [{ name: 'data_0', datatype: 'FP16', shape: [1, 3, 224, 224] }],
        outputs: [{ name: 'softmaxout_1', datatype: 'FP16', shape: [1, 1000, 1, 1] }],
      });
      const fp32 = await call(url, '/v2/models/squeezenet-fp32/versions/1');
      assert.deepEqual(fp32.body.inputs, [{ name: 'data_0', datatype: 'FP32', shape: [-1, 3, 224, 224] }]);
      assert.deepEqual(fp32.body.outputs, [{ name: 'softmaxout_1', datatype: 'FP32', shape: [-1, 1000, 1, 1] }]);
      assert.equal(fp32.body.platform, 'onnxruntime_onnx');
    });

    it('says a model and a version are ready, and answers 404 for an unknown model, version or route', async () => {
      assert.deepEqual((await call(url, '/v2/models/squeezenet/ready')).body, { name: 'squeezenet', version: '1', ready: true });
      assert.equal((await call(url, '/v2/models/squeezenet-fp32/versions/1/ready')).status, 200);
      assertOipError(await call(url, '/v2/models/nosuch/ready'), 404, 'UNKNOWN_MODEL');
      assertOipError(await call(url, '/v2/models/squeezenet/versions/7/ready'), 404, 'UNKNOWN_MODEL');
      assertOipError(await call(url, '/v2/models/nosuch'), 404, 'UNKNOWN_MODEL');
      assertOipError(await call(url, '/v2/models/squeezenet/versions/7'), 404, 'UNKNOWN_MODEL');
      const route = await fetch(new URL('/v2/nothing/here', url));
      assert.equal(route.status, 404);
      assert.equal(((await route.json()) as { code: string }).code, 'NOT_FOUND');
    });

    it('stays ready while its one worker is too busy to describe the model, from what the worker last said, and not once the worker is gone', async () => {
      extraBroker = await startBroker({ heartbeatIntervalMs: OIP_HEARTBEAT_MS });
      const registered = nextWorker(extraBroker, (w) => w.services.includes('infer.busy'));
      let startedWork!: () => void;
      const working = new Promise<void>((resolve) => (startedWork = resolve));
      const metadata = { name: 'busy', version: '1', versions: ['1'], inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }] };
      extraWorker = new WorkerConnection(
        ['classify.busy', 'infer.busy'],
        async (body, ctx) => {
          if ((decodeHeader(body[0]) as { op?: string }).op === 'metadata') return [Buffer.from(JSON.stringify(metadata))];
          startedWork();
          await sleep(1500, undefined, { signal: ctx.signal }).catch(() => undefined); // holds its only slot
          return [Buffer.from('{"error":{"code":"BAD_IMAGE","message":"busy worker"}}')];
        },
        { connect: extraBroker.backendEndpoint, heartbeatIntervalMs: OIP_HEARTBEAT_MS, capacity: 1, kind: 'busy' },
        testLogger,
      );
      extraWorker.start();
      await registered;
      extra = new WebApp({ broker: extraBroker.frontendEndpoint, http: 0, infoCacheMs: 0, probeTimeoutMs: 300 }, testLogger);
      const base = await extra.start();
      assert.deepEqual((await call(base, '/v2/models/busy/ready')).body, { name: 'busy', version: '1', ready: true });
      const work = infer(base, '/v2/models/busy/infer', imageRequest([kitten]), [bytesTensor([kitten])]);
      await working;
      // The metadata request now waits behind the running one past its 300 ms deadline.
      assert.deepEqual((await call(base, '/v2/models/busy/ready')).body, { name: 'busy', version: '1', ready: true });
      assert.deepEqual((await call(base, '/v2/models/busy')).body.inputs, metadata.inputs);
      assertOipError(await call(base, '/v2/models/busy/versions/2/ready'), 504, 'TIMEOUT'); // never described: not claimed ready
      assertOipError(await work, 400, 'BAD_IMAGE');
      await extraWorker.close();
      extraWorker = undefined;
      assertOipError(await call(base, '/v2/models/busy/ready'), 503, 'NO_WORKERS');
    });
  });

  describe('infer', () => {
    it('classifies a BYTES image sent as base64 JSON data exactly as /api/classify does', async () => {
      const answer = await infer(url, '/v2/models/squeezenet/infer', {
        id: 'req-1',
        inputs: [{ name: 'data_0', datatype: 'BYTES', shape: [1], parameters: { content_type: 'base64' }, data: [kitten.toString('base64')] }],
      });
      assert.equal(answer.status, 200, JSON.stringify(answer.json));
      assert.equal(answer.json.model_name, 'squeezenet');
      assert.equal(answer.json.model_version, '1');
      assert.equal(answer.json.id, 'req-1');
      const [output] = answer.json.outputs;
      assert.deepEqual([output.name, output.datatype, output.shape], ['softmaxout_1', 'FP16', [1, 1000, 1, 1]]);
      assert.equal(output.data.length, 1000);
      assert.equal(argmax(output.data), TABBY);
      const classify = await call(url, '/api/classify?model=squeezenet&topk=1', {
        method: 'POST',
        body: new Uint8Array(kitten),
        headers: { 'content-type': 'image/png' },
      });
      assert.equal(output.data[TABBY], classify.body.predictions[0].probability, 'same decode, same preprocessing, same session');
    });

    it('takes a BYTES image through the binary data extension and answers classes "score:index:label"', async () => {
      const answer = await infer(
        url,
        '/v2/models/squeezenet/infer',
        { ...imageRequest([kitten]), outputs: [{ name: 'softmaxout_1', parameters: { classification: 3 } }] },
        [bytesTensor([kitten])],
      );
      assert.equal(answer.status, 200, JSON.stringify(answer.json));
      const [output] = answer.json.outputs;
      assert.deepEqual([output.datatype, output.shape], ['BYTES', [1, 3]]);
      assert.match(output.data[0], /^0\.9\d{5}:281:tabby, tabby cat$/);
      const scores = output.data.map((s: string) => Number(s.split(':')[0]));
      assert.ok(scores[0] >= scores[1] && scores[1] >= scores[2], 'best first');
    });

    it('answers a classification in the binary section when binary_data is asked', async () => {
      const answer = await infer(
        url,
        '/v2/models/squeezenet-fp32/infer',
        { ...imageRequest([kitten, fish]), outputs: [{ name: 'softmaxout_1', parameters: { classification: 1, binary_data: true } }] },
        [bytesTensor([kitten, fish])],
      );
      const [output] = answer.json.outputs;
      assert.deepEqual([output.datatype, output.shape, output.parameters.binary_data_size], ['BYTES', [2, 1], answer.binary!.length]);
      const classes = parseBytesTensor(answer.binary!);
      assert.deepEqual(classes.map((c) => c.split(':')[1]), [String(TABBY), String(TENCH)]);
    });

    it('runs a batch of BYTES images: one row per image, for a dynamic batch and for a batch fixed to 1', async () => {
      for (const model of ['squeezenet-fp32', 'squeezenet']) {
        const answer = await infer(url, `/v2/models/${model}/infer`, imageRequest([kitten, fish, kitten]), [bytesTensor([kitten, fish, kitten])]);
        assert.equal(answer.status, 200, JSON.stringify(answer.json));
        const [output] = answer.json.outputs;
        assert.deepEqual(output.shape, [3, 1000, 1, 1], model);
        assert.deepEqual([0, 1, 2].map((row) => argmax(output.data, row * 1000, (row + 1) * 1000)), [TABBY, TENCH, TABBY], model);
        assert.deepEqual(output.data.slice(0, 1000), output.data.slice(2000, 3000), `${model}: the same image gives the same row`);
      }
    });

    it('runs a ready FP32 tensor with batch 2 in binary, with no image decode, and answers binary output', async () => {
      const tensor = new Float32Array(2 * kittenTensor.length);
      tensor.set(kittenTensor);
      tensor.set(fishTensor, kittenTensor.length);
      const answer = await infer(
        url,
        '/v2/models/squeezenet-fp32/infer',
        {
          inputs: [{ name: 'data_0', datatype: 'FP32', shape: [2, 3, 224, 224], parameters: { binary_data_size: tensor.byteLength } }],
          parameters: { binary_data_output: true },
        },
        [floatBytes(tensor)],
      );
      assert.equal(answer.status, 200, JSON.stringify(answer.json));
      const [output] = answer.json.outputs;
      assert.deepEqual([output.datatype, output.shape, output.parameters.binary_data_size], ['FP32', [2, 1000, 1, 1], 8000]);
      const scores = new Float32Array(answer.binary!.buffer.slice(answer.binary!.byteOffset, answer.binary!.byteOffset + 8000));
      assert.deepEqual([argmax(scores, 0, 1000), argmax(scores, 1000, 2000)], [TABBY, TENCH]);
    });

    it('gives the same rows for a tensor preprocessed by the client as for the image it came from', async () => {
      const fromTensor = await infer(url, '/v2/models/squeezenet-fp32/infer', {
        inputs: [{ name: 'data_0', datatype: 'FP32', shape: [1, 3, 224, 224], data: Array.from(kittenTensor) }],
      });
      const fromImage = await infer(url, '/v2/models/squeezenet-fp32/infer', imageRequest([kitten]), [bytesTensor([kitten])]);
      const a = fromTensor.json.outputs[0].data as number[];
      const b = fromImage.json.outputs[0].data as number[];
      assert.equal(argmax(a), TABBY);
      assert.ok(a.every((v, i) => Math.abs(v - b[i]!) < 1e-3), 'the test preprocessing matches the worker decode');
    });

    it('runs an FP16 tensor of batch 2 on a model whose batch is fixed to 1, one run per row', async () => {
      const tensor = new Float32Array(2 * kittenTensor.length);
      tensor.set(fishTensor);
      tensor.set(kittenTensor, kittenTensor.length);
      const half = float32ToFloat16(tensor);
      const answer = await infer(
        url,
        '/v2/models/squeezenet/versions/1/infer',
        { inputs: [{ name: 'data_0', datatype: 'FP16', shape: [2, 3, 224, 224], parameters: { binary_data_size: half.byteLength } }] },
        [Buffer.from(half.buffer)],
      );
      assert.equal(answer.status, 200, JSON.stringify(answer.json));
      const [output] = answer.json.outputs;
      assert.deepEqual(output.shape, [2, 1000, 1, 1]);
      assert.deepEqual([argmax(output.data, 0, 1000), argmax(output.data, 1000, 2000)], [TENCH, TABBY]);
    });

    it('inflates a gzip-compressed request body', async () => {
      const json = Buffer.from(JSON.stringify(imageRequest([kitten])));
      const answer = await infer(url, '/v2/models/squeezenet/infer', '', [], {
        body: new Uint8Array(gzipSync(Buffer.concat([json, bytesTensor([kitten])]))),
        headers: { 'Content-Encoding': 'gzip', 'Inference-Header-Content-Length': String(json.length) },
      });
      assert.equal(answer.status, 200, JSON.stringify(answer.json));
      assert.equal(argmax(answer.json.outputs[0].data), TABBY);
    });
  });

  describe('worker faults', () => {
    it('sends an infer request whose worker is SIGKILLed mid-batch to another worker (infer.* is idempotent)', async () => {
      extraBroker = await startBroker({ defaultDeadlineMs: 60_000, heartbeatIntervalMs: OIP_HEARTBEAT_MS });
      const broker = extraBroker;
      const env = OIP_ENV;
      const models = await squeezenetPairRepository();
      const args = ['inference', '--models', models, '--threads', '1'];
      const ROWS = 16;
      const serves = (w: WorkerInfo) => w.services.includes('infer.squeezenet-fp32');
      const victim = await spawnWorker(broker, args, serves, env);
      const client = new ZerveClient({ broker: broker.frontendEndpoint, timeoutMs: 60_000 });
      let survivor: CliProcess | undefined;
      try {
        // Long enough to be still running when the kill comes: 16 phone-sized JPEGs to decode.
        const images = Array.from({ length: ROWS }, () => bigKitten);
        const reply = client.request('infer.squeezenet-fp32', [encodeHeader({ op: 'images' }), ...images]);
        const service = () => client.services().then((list) => list.find((x) => x.name === 'infer.squeezenet-fp32'));
        // In flight on the only worker: the answer can then only come from the survivor, through the broker's requeue.
        while (((await service())?.inFlight ?? 0) < 1) await sleep(10);
        const removed = once(broker, 'worker-removed');
        await victim.kill('SIGKILL');
        survivor = await spawnWorker(broker, args, serves, env);
        await removed;
        const [header, output] = await reply;
        const parsed = decodeReply<InferReplyHeader>(header);
        assert.deepEqual(parsed.output.shape, [ROWS, 1000, 1, 1]);
        const scores = new Float32Array(output!.buffer.slice(output!.byteOffset, output!.byteOffset + output!.length));
        assert.equal(argmax(scores, 0, 1000), TABBY);
        assert.equal(argmax(scores, (ROWS - 1) * 1000, ROWS * 1000), TABBY);
      } finally {
        await client.close();
        await victim.kill();
        await survivor?.kill();
      }
    });
  });

  describe('bad requests', () => {
    const path = '/v2/models/squeezenet-fp32/infer';

    it('answers 400 to malformed JSON', async () => {
      assertOipError(await infer(url, path, '{"inputs": [', []), 400, 'BAD_REQUEST');
      assertOipError(await infer(url, path, '', []), 400, 'BAD_REQUEST');
    });

    it('answers 400 to a request that does not fit the protocol (no inputs, two inputs, no data)', async () => {
      assertOipError(await infer(url, path, { inputs: [] }), 400, 'BAD_REQUEST');
      assertOipError(await infer(url, path, { outputs: [] }), 400, 'BAD_REQUEST');
      const input = { name: 'data_0', datatype: 'BYTES', shape: [1], data: ['x'] };
      assertOipError(await infer(url, path, { inputs: [input, input] }), 400, 'BAD_REQUEST');
      assertOipError(await infer(url, path, { inputs: [{ name: 'data_0', datatype: 'FP32', shape: [1, 3, 224, 224] }] }), 400, 'BAD_REQUEST');
    });

    it('answers 400 to a wrong datatype: one we do not take, or not the model input type', async () => {
      assertOipError(await infer(url, path, { inputs: [{ name: 'data_0', datatype: 'INT64', shape: [1], data: [1] }] }), 400, 'BAD_REQUEST');
      const fp16 = { inputs: [{ name: 'data_0', datatype: 'FP16', shape: [1, 3, 224, 224], parameters: { binary_data_size: 2 * 150528 } }] };
      const answer = await infer(url, path, fp16, [Buffer.alloc(2 * 150528)]);
      assertOipError(answer, 400, 'BAD_REQUEST');
      assert.match(answer.json.error, /FP32/);
    });

    it('answers 400 to a wrong shape, a wrong input or output name, data that does not fill its shape, and base64 data that is not base64', async () => {
      const wrongShape = { inputs: [{ name: 'data_0', datatype: 'FP32', shape: [1, 3, 200, 200], parameters: { binary_data_size: 4 * 120000 } }] };
      assertOipError(await infer(url, path, wrongShape, [Buffer.alloc(4 * 120000)]), 400, 'BAD_REQUEST');
      const rank = { inputs: [{ name: 'data_0', datatype: 'FP32', shape: [3, 224, 224], data: new Array(150528).fill(0) }] };
      assertOipError(await infer(url, path, rank), 400, 'BAD_REQUEST');
      const short = { inputs: [{ name: 'data_0', datatype: 'FP32', shape: [1, 3, 224, 224], data: [1, 2, 3] }] };
      assertOipError(await infer(url, path, short), 400, 'BAD_REQUEST');
      const count = { inputs: [{ name: 'data_0', datatype: 'BYTES', shape: [2], parameters: { content_type: 'base64' }, data: [kitten.toString('base64')] }] };
      assertOipError(await infer(url, path, count), 400, 'BAD_REQUEST');
      const notBase64 = { inputs: [{ name: 'data_0', datatype: 'BYTES', shape: [1], parameters: { content_type: 'base64' }, data: [`%%${kitten.toString('base64')}`] }] };
      const refused = await infer(url, path, notBase64);
      assertOipError(refused, 400, 'BAD_REQUEST');
      assert.match(refused.json.error, /not base64/);
      const name = { inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: kitten.length + 4 } }] };
      assertOipError(await infer(url, path, name, [bytesTensor([kitten])]), 400, 'BAD_REQUEST');
      const output = { ...imageRequest([kitten]), outputs: [{ name: 'probabilities' }] };
      assertOipError(await infer(url, path, output, [bytesTensor([kitten])]), 400, 'BAD_REQUEST');
    });

    it('answers 400 when the binary sizes do not match the body', async () => {
      const request = imageRequest([kitten]);
      const binary = bytesTensor([kitten]);
      assertOipError(await infer(url, path, request, [binary.subarray(0, binary.length - 10)]), 400, 'BAD_REQUEST');
      assertOipError(await infer(url, path, request, [binary, Buffer.from('extra')]), 400, 'BAD_REQUEST');
      const cut = { inputs: [{ ...request.inputs[0], parameters: { binary_data_size: 20 } }] };
      assertOipError(await infer(url, path, cut, [binary.subarray(0, 20)]), 400, 'BAD_REQUEST'); // an element says more bytes than there are
      const tensor = { inputs: [{ name: 'data_0', datatype: 'FP32', shape: [1, 3, 224, 224], parameters: { binary_data_size: 100 } }] };
      assertOipError(await infer(url, path, tensor, [Buffer.alloc(100)]), 400, 'BAD_REQUEST');
      const json = Buffer.from(JSON.stringify(request));
      const overlong = await fetch(new URL(path, url), {
        method: 'POST',
        body: new Uint8Array(Buffer.concat([json, binary])),
        headers: { 'Inference-Header-Content-Length': String(json.length + binary.length + 1) },
      });
      assertOipError({ status: overlong.status, headers: overlong.headers, json: await overlong.json() }, 400, 'BAD_REQUEST');
    });

    it('answers 400 to hostile sizes and values: negative or huge binary_data_size, no header length, a tensor of infinities, data nested past its shape, K below 1', async () => {
      const binary = bytesTensor([kitten]);
      for (const size of [-1, 2 ** 53, 1.5]) {
        const request = { inputs: [{ name: 'data_0', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: size } }] };
        assertOipError(await infer(url, path, request, [binary]), 400, 'BAD_REQUEST');
      }
      const noHeader = Buffer.concat([Buffer.from(JSON.stringify(imageRequest([kitten]))), binary]);
      assertOipError(await infer(url, path, noHeader.toString('latin1')), 400, 'BAD_REQUEST');
      // JSON.parse reads 1e400 as Infinity; the model would answer NaN scores.
      const infinities = `{"inputs":[{"name":"data_0","datatype":"FP32","shape":[1,3,224,224],"data":[${new Array(150528).fill('1e400').join(',')}]}],` +
        `"outputs":[{"name":"softmaxout_1","parameters":{"classification":1}}]}`;
      assertOipError(await infer(url, path, infinities), 400, 'BAD_REQUEST');
      // Nesting deeper than the shape, deep enough to overflow a recursive flatten.
      const deep = `{"inputs":[{"name":"data_0","datatype":"FP32","shape":[1,3,224,224],"data":${'['.repeat(200_000)}1${']'.repeat(200_000)}}]}`;
      assertOipError(await infer(url, path, deep), 400, 'BAD_REQUEST');
      const deepBytes = { inputs: [{ name: 'data_0', datatype: 'BYTES', shape: [1], data: [[kitten.toString('base64')]], parameters: { content_type: 'base64' } }] };
      assertOipError(await infer(url, path, deepBytes), 400, 'BAD_REQUEST');
      for (const k of [0, -3]) {
        const request = { ...imageRequest([kitten]), outputs: [{ name: 'softmaxout_1', parameters: { classification: k } }] };
        assertOipError(await infer(url, path, request, [binary]), 400, 'BAD_REQUEST');
      }
      const all = await infer(url, path, { ...imageRequest([kitten]), outputs: [{ name: 'softmaxout_1', parameters: { classification: 5000 } }] }, [binary]);
      assert.equal(all.status, 200);
      assert.deepEqual(all.json.outputs[0].shape, [1, 1000], 'K past the class count answers every class');
      assert.equal(all.json.outputs[0].data[0].split(':')[1], String(TABBY));
    });

    it('answers 400 BAD_IMAGE to BYTES that are not an image', async () => {
      const junk = Buffer.from('definitely not a png');
      assertOipError(await infer(url, path, imageRequest([junk]), [bytesTensor([junk])]), 400, 'BAD_IMAGE');
    });

    it('answers 413 to a body over the upload limit', async () => {
      extra = new WebApp({ broker: cluster.broker.frontendEndpoint, http: 0, maxUploadBytes: 64 * 1024 }, testLogger);
      const base = await extra.start();
      const big = Buffer.alloc(100 * 1024, 1);
      assertOipError(await infer(base, path, imageRequest([big]), [bytesTensor([big])]), 413, 'PAYLOAD_TOO_LARGE');
    });

    it('answers 404 to an unknown model or version', async () => {
      assertOipError(await infer(url, '/v2/models/nosuch/infer', imageRequest([kitten]), [bytesTensor([kitten])]), 404, 'UNKNOWN_MODEL');
      assertOipError(await infer(url, '/v2/models/squeezenet/versions/9/infer', imageRequest([kitten]), [bytesTensor([kitten])]), 404, 'UNKNOWN_MODEL');
    });

    it('answers 504 when the worker does not answer in time, and the cluster goes on serving', async () => {
      const ready = nextWorker(cluster.broker, (w) => w.services.includes('infer.stuck'));
      extraWorker = new WorkerConnection(
        ['classify.stuck', 'infer.stuck'],
        async (body, ctx) => {
          decodeHeader(body[0]);
          // Longer than the web app waits, short enough not to hold up the worker's graceful close.
          await sleep(1500, undefined, { signal: ctx.signal }).catch(() => undefined);
          return [Buffer.from('{}')];
        },
        { connect: cluster.broker.backendEndpoint, heartbeatIntervalMs: OIP_HEARTBEAT_MS, capacity: 4, kind: 'stuck' },
        testLogger,
      );
      extraWorker.start();
      await ready;
      extra = new WebApp({ broker: cluster.broker.frontendEndpoint, http: 0, requestTimeoutMs: 300 }, testLogger);
      const base = await extra.start();
      assertOipError(await infer(base, '/v2/models/stuck/infer', imageRequest([kitten]), [bytesTensor([kitten])]), 504, 'TIMEOUT');
      const after = await infer(url, path, imageRequest([kitten]), [bytesTensor([kitten])]);
      assert.equal(after.status, 200);
    });

    it("answers 503 OVERLOADED with Retry-After when the broker's queue for the model is full", async () => {
      extraBroker = await startBroker({ heartbeatIntervalMs: OIP_HEARTBEAT_MS, maxQueuedPerService: 1 });
      const ready = nextWorker(extraBroker, (w) => w.services.includes('infer.slow'));
      extraWorker = new WorkerConnection(
        ['classify.slow', 'infer.slow'],
        async (_body, ctx) => {
          await sleep(1500, undefined, { signal: ctx.signal }).catch(() => undefined); // holds its one slot while the others arrive
          return [Buffer.from('{"error":{"code":"BAD_IMAGE","message":"slow worker"}}')];
        },
        { connect: extraBroker.backendEndpoint, heartbeatIntervalMs: OIP_HEARTBEAT_MS, capacity: 1, kind: 'slow' },
        testLogger,
      );
      extraWorker.start();
      await ready;
      extra = new WebApp({ broker: extraBroker.frontendEndpoint, http: 0 }, testLogger);
      const base = await extra.start();
      // One runs, one waits, the rest find the queue full.
      const answers = await Promise.all(Array.from({ length: 4 }, () => infer(base, '/v2/models/slow/infer', imageRequest([kitten]), [bytesTensor([kitten])])));
      const overloaded = answers.filter((a) => a.status === 503);
      assert.equal(overloaded.length, 2, JSON.stringify(answers.map((a) => a.json)));
      for (const answer of overloaded) assertOipError(answer, 503, 'OVERLOADED');
    });
  });
});
