import assert from 'node:assert/strict';
import { ERROR_CODES, ZerveError } from '../shared/errors.ts';
import { HTTP_STATUS_OF } from '../webapp/http-status.ts';
import { docSection, readDocs } from './helpers/docs.ts';

describe('error catalog', () => {
  it('lists exactly the catalog codes in the documented error table', async () => {
    const section = docSection(await readDocs(), 'Error codes');
    assert.ok(section, 'README.md or docs/ has an "Error codes" section');
    const documented = [...section.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual(documented.sort(), Object.keys(ERROR_CODES).sort());
  });

  it('gives every catalog code the documented HTTP status the web app answers', async () => {
    const docs = (await readDocs()).map((doc) => doc.text).join('\n\n');
    const section = docs.split('Errors answer `{"error":{"code","message"}}`')[1]!.split('\n\n')[1]!;
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
