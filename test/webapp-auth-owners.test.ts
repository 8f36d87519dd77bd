import assert from 'node:assert/strict';
import { AuthAdmin } from '../shared/auth-admin.ts';
import type { DatasetSummary } from '../shared/training.ts';
import { SqliteAuthStore } from '../shared/store/sqlite-auth-store.ts';
import { halvesZip, startTrainingCluster, type TrainingCluster } from './fixtures/webapp-training-cluster.ts';
import { tempDir } from './helpers/cluster.ts';
import { eventually } from './helpers/eventually.ts';

describe('web app owners of datasets and experiments', function () {
  this.timeout(120_000);
  let cluster: TrainingCluster;
  let authDir: { path: string; remove: () => Promise<void> };
  let store: SqliteAuthStore;
  const tokens: Record<string, string> = {};

  before(async () => {
    authDir = await tempDir('zerve-auth-owners-');
    store = SqliteAuthStore.inDataDir(authDir.path);
    const admin = new AuthAdmin(store, 'test');
    for (const [name, role] of [['alice', 'member'], ['bert', 'member'], ['ada', 'admin']] as const) {
      await admin.addUser(name, role);
      tokens[name] = (await admin.createToken(name, 'read,train')).token;
    }
    cluster = await startTrainingCluster({ web: { auth: 'tokens', data: authDir.path } });
  });
  after(async () => {
    await cluster?.close();
    await store?.close();
    await authDir?.remove();
  });

  async function call(user: string, path: string, init: RequestInit = {}) {
    const res = await fetch(new URL(path, cluster.url), { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${tokens[user]}` } });
    return { status: res.status, body: (await res.json()) as any };
  }
  const upload = async (user: string, zip: Buffer) =>
    call(user, '/api/datasets?name=halves', { method: 'POST', body: new Uint8Array(zip), headers: { 'content-type': 'application/zip' } });
  const listed = async (user: string) => ((await call(user, '/api/datasets')).body as DatasetSummary[]).map((d) => d.id);

  it("keeps user B's dataset from user A's list and trainings, shows it to an admin, and dedupes per owner", async () => {
    const zip = await halvesZip(4);
    const added = await upload('bert', zip);
    assert.equal(added.status, 201, JSON.stringify(added.body));
    const id = (added.body as DatasetSummary).id;
    assert.ok((await listed('bert')).includes(id));
    assert.ok((await listed('ada')).includes(id), 'an admin sees all');
    assert.ok(!(await listed('alice')).includes(id), "alice does not see bert's dataset");
    const train = await call('alice', '/api/train', { method: 'POST', body: JSON.stringify({ datasetId: id }), headers: { 'content-type': 'application/json' } });
    assert.deepEqual([train.status, train.body.error?.code], [403, 'FORBIDDEN']);
    const again = await upload('alice', zip);
    assert.equal(again.status, 201);
    assert.equal((again.body as DatasetSummary).id, id, 'the same bytes are stored once');
    assert.ok((await listed('alice')).includes(id), 'her own upload of it is hers');
    const sharedZip = await halvesZip(5);
    const shared = await call('bert', '/api/datasets?name=common&shared=true', { method: 'POST', body: new Uint8Array(sharedZip), headers: { 'content-type': 'application/zip' } });
    assert.equal(shared.status, 201);
    assert.ok((await listed('alice')).includes((shared.body as DatasetSummary).id), 'a shared dataset is listed to everyone');
    const audit = (await store.listAudit()).filter((e) => e.action === 'dataset.add' && e.target === id);
    assert.deepEqual(audit.map((e) => e.user), ['bert', 'alice'], 'each upload is in the audit log with its user');
  });

  it("keeps user B's experiment and its runs from user A, recorded with the experiment where the training worker keeps it", async () => {
    const added = await upload('bert', await halvesZip(4));
    assert.equal(added.status, 201, JSON.stringify(added.body));
    const id = (added.body as DatasetSummary).id;
    const started = await call('bert', '/api/train', { method: 'POST', body: JSON.stringify({ datasetId: id, family: 'mlp', epochs: 1, owner: 'someone-else' }), headers: { 'content-type': 'application/json' } });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const job = await eventually('the training to finish', async () => {
      const status = (await call('bert', `/api/jobs/${started.body.id}`)).body as { state: string; result?: { experimentId: string } };
      return status.state === 'succeeded' || status.state === 'failed' ? status : undefined;
    }, 90_000, 200);
    assert.equal(job.state, 'succeeded', JSON.stringify(job));
    const experimentId = job.result!.experimentId;
    const ids = async (user: string) => ((await call(user, '/api/runs')).body as { id: string; request: { owner?: string } }[]);
    const berts = (await ids('bert')).find((e) => e.id === experimentId);
    assert.ok(berts, 'bert lists his experiment');
    assert.notEqual(berts.request.owner, 'someone-else', 'the owner is the caller, whatever the body says');
    assert.ok((await ids('ada')).some((e) => e.id === experimentId), 'an admin lists it');
    assert.ok(!(await ids('alice')).some((e) => e.id === experimentId), 'alice does not');
    for (const target of [experimentId, `${experimentId}-1`]) {
      const refused = await call('alice', `/api/runs/${target}`);
      assert.deepEqual([refused.status, refused.body.error?.code], [403, 'FORBIDDEN'], target);
      assert.equal((await call('bert', `/api/runs/${target}`)).status, 200, target);
    }
    const cancel = await call('alice', `/api/jobs/${started.body.id}`, { method: 'DELETE' });
    assert.deepEqual([cancel.status, cancel.body.error?.code], [403, 'FORBIDDEN'], 'nor cancels his training');
  });
});
