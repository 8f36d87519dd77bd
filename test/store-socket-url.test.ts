import assert from 'node:assert/strict';
import type pg from 'pg';
import { ZerveError } from '../shared/errors.ts';
import { openPostgresPool, redactedUrl } from '../shared/store/postgres-pool.ts';
import { testLogger } from './fixtures/webapp-cluster.ts';
import { TestPostgres, skipUnlessPostgres } from './helpers/postgres.ts';

describe('store URLs naming a unix socket', function () {
  this.timeout(30_000);
  let server: TestPostgres | undefined;
  let pool: pg.Pool | undefined;

  before(async function () {
    skipUnlessPostgres(this);
    server = await TestPostgres.start();
  });
  after(() => server?.close());
  afterEach(async () => {
    await pool?.end();
    pool = undefined;
  });

  it('redacts the password of libpq\'s host-less form and keeps the rest', () => {
    assert.equal(redactedUrl('postgres://zerve:secret@/zerve?host=/run/pg'), 'postgres://zerve:***@/zerve?host=/run/pg');
    assert.equal(redactedUrl('postgresql://zerve@/zerve?host=/run/pg'), 'postgresql://zerve@/zerve?host=/run/pg');
    assert.equal(redactedUrl('postgres://zerve:secret@db:5432/zerve'), 'postgres://zerve:***@db:5432/zerve');
  });

  it('opens a pool through the socket of postgres://user:password@/database?host=DIR', async () => {
    pool = await openPostgresPool(server!.socketUrl, {}, testLogger);
    const { rows } = await pool.query<{ address: string | null }>('SELECT inet_server_addr() AS address');
    assert.equal(rows[0]?.address, null, 'a unix-socket session has no server address');
  });

  it('names the store, password redacted, when the database behind the socket does not exist', async () => {
    const url = server!.socketUrl.replace('@/zerve?', '@/nowhere?');
    const err = await openPostgresPool(url, {}, testLogger).then(
      () => assert.fail('opened'),
      (e: unknown) => e as ZerveError,
    );
    assert.equal(err.code, 'BAD_CONFIG');
    assert.match(err.message, /cannot open the store postgres:\/\/zerve:\*\*\*@\/nowhere\?host=/);
    assert.doesNotMatch(err.message, new RegExp(server!.password));
  });
});
