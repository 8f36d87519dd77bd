import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, fixtureImage, tempDir } from './helpers/cluster.ts';
import { startOipCluster, type OipCluster } from './fixtures/oip-cluster.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';
import { AuthAdmin } from '../shared/auth-admin.ts';
import { SqliteAuthStore } from '../shared/store/sqlite-auth-store.ts';
import { WebApp } from '../webapp/web-app.ts';

const PYTHON = '/usr/bin/python3';
const TRITON_CLIENT = join(REPO_ROOT, '..', 'shared', 'reference', 'tritonclient');
const SCRIPT = join(REPO_ROOT, 'test', 'fixtures', 'oip-tritonclient.py');
const ENV = { ...process.env, PYTHONPATH: TRITON_CLIENT };

/** Why Triton's client cannot run here, or undefined when it can. */
function missingPython(): string | undefined {
  const probe = spawnSync(PYTHON, ['-c', 'import numpy, geventhttpclient, rapidjson, tritonclient.http'], { env: ENV, encoding: 'utf8' });
  if (probe.status === 0) return undefined;
  return `${PYTHON} cannot import Triton's client (${(probe.stderr || String(probe.error)).trim().split('\n').at(-1)}): apt-get install -y python3-numpy python3-geventhttpclient python3-rapidjson (.ci/run does)`;
}

interface TopClass {
  score: number;
  index: number;
  label: string;
}

describe("Triton's Python HTTP client against /v2", function () {
  this.timeout(120_000);
  let cluster: OipCluster | undefined;

  before(function () {
    const missing = missingPython();
    if (missing && process.env.ZERVE_CI) throw new Error(missing); // .ci/run installs them
    if (missing) {
      console.warn(`      skipped: ${missing}`);
      this.skip();
    }
  });
  beforeEach(async () => {
    cluster = await startOipCluster();
  });
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  it('checks liveness, readiness and metadata, and classifies kitten.png as 281 from a BYTES image and from its own FP32 tensor', async () => {
    const host = new URL(cluster!.url).host;
    const { stdout } = await promisify(execFile)(PYTHON, [SCRIPT, host, 'squeezenet-fp32', fixtureImage('kitten.png')], { env: ENV });
    const report = JSON.parse(stdout) as {
      live: boolean;
      ready: boolean;
      metadata: { inputs: { name: string; datatype: string; shape: number[] }[]; platform: string };
      bytes: TopClass[];
      tensor: TopClass[];
      tensorArgmax: number;
      tensorShape: number[];
    };
    assert.equal(report.live, true);
    assert.equal(report.ready, true);
    assert.equal(report.metadata.platform, 'onnxruntime_onnx');
    assert.deepEqual(report.metadata.inputs, [{ name: 'data_0', datatype: 'FP32', shape: [-1, 3, 224, 224] }]);
    for (const path of ['bytes', 'tensor'] as const) {
      const top = report[path];
      assert.equal(top.length, 3, `${path}: class_count=3 answers 3 classes`);
      assert.deepEqual(top[0], { ...top[0], index: 281, label: 'tabby, tabby cat' }, path);
      assert.ok(top[0]!.score > 0.8 && top[0]!.score >= top[1]!.score, path);
    }
    assert.equal(report.tensorArgmax, 281);
    assert.deepEqual(report.tensorShape, [1, 1000, 1, 1]);
    assert.ok(Math.abs(report.bytes[0]!.score - report.tensor[0]!.score) < 1e-3, 'the test preprocessing matches the worker decode');
  });

  it('passes with a bearer token sent through headers=, and is refused 401 without one, when auth is on', async () => {
    const data = await tempDir('zerve-oip-auth-');
    const store = SqliteAuthStore.inDataDir(data.path);
    const web = new WebApp({ broker: cluster!.broker.frontendEndpoint, http: 0, infoCacheMs: 200, auth: 'tokens', data: data.path }, testLogger);
    try {
      const admin = new AuthAdmin(store, 'test');
      await admin.addUser('triton', 'member');
      const { token } = await admin.createToken('triton', 'read,infer');
      const host = new URL(await web.start()).host;
      const args = [SCRIPT, host, 'squeezenet-fp32', fixtureImage('kitten.png')];
      const { stdout } = await promisify(execFile)(PYTHON, args, { env: { ...ENV, ZERVE_TOKEN: token } });
      assert.equal((JSON.parse(stdout) as { tensorArgmax: number }).tensorArgmax, 281);
      const refused = await promisify(execFile)(PYTHON, args, { env: ENV }).then(
        () => assert.fail('the client passed without a token'),
        (err: { code: number; stderr: string }) => err,
      );
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /\[401\]/, 'the client reports the 401');
    } finally {
      await web.close();
      await store.close();
      await data.remove();
    }
  });
});
