/**
 * The benchmark's Open Inference Protocol section: `POST /v2/models/{m}/infer` against
 * `POST /api/classify` and `ZerveClient.classify`, in the same run, on a running cluster. The /v2
 * paths send the image as one BYTES element (binary data extension), or a ready FP32 tensor that the
 * client preprocessed once (no decode in the worker); `infer.<model>` through ZerveClient shows the
 * tensor path without HTTP. Each answer is checked (top class) before measuring. The same bytes go
 * out every time, so the classify rows skip the worker's result cache (`cache: false`) to run
 * inference as the /v2 rows do (the tensor path has no cache).
 */
import { Agent, request } from 'node:http';
import { pino } from 'pino';
import { ZerveClient } from '../../shared/client.ts';
import { decodeReply, encodeHeader } from '../../shared/messages.ts';
import { inferService, tensorBytes, type InferHeader, type InferReplyHeader } from '../../shared/infer-messages.ts';
import { WebApp } from '../../webapp/web-app.ts';
import { ImageDecoder } from '../../workers/inference/image-decoder.ts';
import { runLoad, type LoadResult } from './load-runner.ts';

export type OipPath = 'zeromq classify' | 'http /api/classify' | 'http /v2 infer BYTES' | 'http /v2 infer FP32 tensor' | 'zeromq infer tensor';
export const OIP_PATHS: readonly OipPath[] = ['zeromq classify', 'http /api/classify', 'http /v2 infer BYTES', 'http /v2 infer FP32 tensor', 'zeromq infer tensor'];

/** Requests each row times at least (started and answered inside its window), however long they wait. */
const MIN_TIMED = 50;

export interface OipBenchOptions {
  /** Frontend of a running cluster serving `model` (squeezenet-fp32: 224x224, BGR, 0..255, NCHW). */
  broker: string;
  model: string;
  image: Buffer;
  /** The class every path must answer. */
  expectedClass: number;
  concurrency: number[];
  warmUpMs: number;
  durationMs: number;
  progress: (message: string) => void;
}

export interface OipBenchRow extends LoadResult {
  path: OipPath;
  /** images/s over `zeromq classify` at the same concurrency. */
  toZeromq: number;
  /** images/s over `http /api/classify` at the same concurrency. */
  toClassify: number;
}

function post(agent: Agent, url: URL, body: Buffer, headers: Record<string, string>, resent = false): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { ...headers, 'content-length': String(body.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks)}`))));
    });
    req.once('error', (err: NodeJS.ErrnoException) => {
      // A kept-alive socket the server closed while idle (its 5 s keepAliveTimeout; the server shares
      // this busy process, so the client hears of it late): send once more, as Node's docs advise.
      if (req.reusedSocket && err.code === 'ECONNRESET' && !resent) post(agent, url, body, headers, true).then(resolve, reject);
      else reject(err);
    });
    req.end(body);
  });
}

/** A /v2 infer body with one binary input, asking the top class back (classification: 1). */
function inferBody(input: object, binary: Buffer): { body: Buffer; headers: Record<string, string> } {
  const json = Buffer.from(JSON.stringify({ inputs: [input], outputs: [{ name: 'softmaxout_1', parameters: { classification: 1 } }] }));
  return { body: Buffer.concat([json, binary]), headers: { 'inference-header-content-length': String(json.length) } };
}

const topOfOip = (answer: Buffer) => Number((JSON.parse(answer.toString()) as { outputs: { data: string[] }[] }).outputs[0]!.data[0]!.split(':')[1]);

export async function benchOip(options: OipBenchOptions): Promise<OipBenchRow[]> {
  const { model, image } = options;
  const maxConcurrency = Math.max(...options.concurrency);
  const client = new ZerveClient({ broker: options.broker });
  const web = new WebApp({ broker: options.broker, http: 0, maxInFlight: Math.max(256, maxConcurrency) }, pino({ level: 'warn' }));
  const agent = new Agent({ keepAlive: true, maxSockets: maxConcurrency });
  try {
    const base = await web.start();
    // The client's own preprocessing, once: what a client that sends ready tensors does.
    const decoded = await new ImageDecoder().decode(image, {
      width: 224, height: 224, resize: 'cover', channels: 'bgr', range: [0, 255], layout: 'NCHW', background: 'white',
    });
    const tensor = tensorBytes(decoded.data);
    const bytesElement = Buffer.concat([Buffer.from(new Uint32Array([image.length]).buffer), image]);
    const v2 = new URL(`/v2/models/${encodeURIComponent(model)}/infer`, base);
    const classifyUrl = new URL(`/api/classify?model=${encodeURIComponent(model)}&topk=1&cache=false`, base);
    const bytesRequest = inferBody({ name: 'data_0', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: bytesElement.length } }, bytesElement);
    const tensorRequest = inferBody({ name: 'data_0', datatype: 'FP32', shape: [1, 3, 224, 224], parameters: { binary_data_size: tensor.length } }, tensor);
    const inferHeader: InferHeader = { op: 'tensor', datatype: 'FP32', shape: [1, 3, 224, 224], classification: 1 };
    const tasks: Record<OipPath, () => Promise<number>> = {
      'zeromq classify': async () => (await client.classify(model, image, { topk: 1, cache: false })).predictions[0]!.index,
      'http /api/classify': async () =>
        (JSON.parse((await post(agent, classifyUrl, image, { 'content-type': 'image/jpeg' })).toString()) as { predictions: { index: number }[] }).predictions[0]!.index,
      'http /v2 infer BYTES': async () => topOfOip(await post(agent, v2, bytesRequest.body, bytesRequest.headers)),
      'http /v2 infer FP32 tensor': async () => topOfOip(await post(agent, v2, tensorRequest.body, tensorRequest.headers)),
      'zeromq infer tensor': async () =>
        decodeReply<InferReplyHeader>((await client.request(inferService(model), [encodeHeader(inferHeader), tensor]))[0]).classes![0]![0]!.index,
    };
    for (const path of OIP_PATHS) {
      const top = await tasks[path]();
      if (top !== options.expectedClass) throw new Error(`${path}: classified as ${top}, expected ${options.expectedClass}`);
    }
    const rows: OipBenchRow[] = [];
    for (const concurrency of options.concurrency) {
      const results = new Map<OipPath, LoadResult>();
      for (const path of OIP_PATHS) {
        options.progress(`OIP: ${path}, concurrency ${concurrency}`);
        // At concurrency 1000 a request waits longer than the window: hold it open until some were timed.
        const minLatencies = Math.min(concurrency, MIN_TIMED);
        results.set(path, await runLoad(tasks[path], { concurrency, warmUpMs: options.warmUpMs, durationMs: options.durationMs, minLatencies }));
      }
      const zeromq = results.get('zeromq classify')!.perSecond;
      const classify = results.get('http /api/classify')!.perSecond;
      for (const [path, result] of results) rows.push({ path, ...result, toZeromq: result.perSecond / zeromq, toClassify: result.perSecond / classify });
    }
    return rows;
  } finally {
    agent.destroy();
    await web.close();
    await client.close();
  }
}
