import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { ERROR_CODES, ZerveError } from '../shared/errors.ts';
import { HTTP_STATUS_OF } from '../webapp/http-status.ts';
import { REPO_ROOT } from './helpers/cluster.ts';

describe('error catalog', () => {
  it('lists exactly the catalog codes in the README error table', async () => {
    const readme = await readFile(`${REPO_ROOT}README.md`, 'utf8');
    const section = readme.split('### Error codes')[1]!.split('\n### ')[0]!;
    const documented = [...section.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual(documented.sort(), Object.keys(ERROR_CODES).sort());
  });

  it('gives every catalog code the README HTTP status the web app answers', async () => {
    const readme = await readFile(`${REPO_ROOT}README.md`, 'utf8');
    const section = readme.split('Errors answer `{"error":{"code","message"}}`')[1]!.split('\n\n')[1]!;
    const documented: Record<string, number> = {};
    for (const [, codes, status] of section.matchAll(/^\| ([A-Z_, ]+) \| (\d{3})/gm)) for (const code of codes!.split(', ')) documented[code] = Number(status);
    assert.deepEqual(documented, { ...HTTP_STATUS_OF });
  });

  it('keeps the code and message of an error across the wire', () => {
    const sent = new ZerveError('BAD_IMAGE', 'not a PNG');
    const received = ZerveError.fromBody(JSON.parse(JSON.stringify(sent.toJSON())));
    assert.equal(received.code, 'BAD_IMAGE');
    assert.equal(received.message, 'not a PNG');
    assert.equal(ZerveError.fromBody({ error: { code: 'NOT_A_CODE' as 'INTERNAL', message: 'x' } }).code, 'INTERNAL');
  });
});
