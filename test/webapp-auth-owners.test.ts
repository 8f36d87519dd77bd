import assert from 'node:assert/strict';
import { AuthAdmin } from '../shared/auth-admin.ts';
import type { DatasetSummary } from '../shared/training.ts';
import { SqliteAuthStore } from '../shared/store/sqlite-auth-store.ts';
import { halvesZip, startTrainingCluster, type TrainingCluster } from './fixtures/webapp-training-cluster.ts';
import { tempDir } from './helpers/cluster.ts';

describe('web app owners of datasets', function () {
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
    const audit = (await store.listAudit()).filter((e) => e.action === 'dataset.add' && e.target === id);
    assert.deepEqual(audit.map((e) => e.user), ['bert', 'alice'], 'each upload is in the audit log with its user');
  });
});
