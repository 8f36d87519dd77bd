import assert from 'node:assert/strict';
import { ZerveError } from '../shared/errors.ts';
import { KeyedAnswers } from '../shared/keyed-answers.ts';

describe('keyed answers', () => {
  it('runs a key once: a resend while the first runs waits for it and gets its answer', async () => {
    const answers = new KeyedAnswers<{ n: number }>();
    let runs = 0;
    let finish!: () => void;
    const gate = new Promise<void>((resolve) => (finish = resolve));
    const work = async () => {
      const n = ++runs;
      await gate;
      return { n };
    };
    const first = answers.run('k', work);
    const resend = answers.run('k', work);
    finish();
    assert.deepEqual(await Promise.all([first, resend]), [{ n: 1 }, { n: 1 }]);
    assert.deepEqual(await answers.run('k', work), { n: 1 });
    assert.deepEqual(await answers.run('other', work), { n: 2 });
    assert.deepEqual(await answers.run(undefined, work), { n: 3 }, 'no key: always runs');
  });

  it('keeps no answer of a request that failed, so the same key runs again', async () => {
    const answers = new KeyedAnswers<{ ok: boolean }>();
    await assert.rejects(answers.run('k', () => Promise.reject(new ZerveError('BAD_DATASET', 'corrupt'))), { code: 'BAD_DATASET' });
    assert.equal(answers.size, 0);
    assert.deepEqual(await answers.run('k', async () => ({ ok: true })), { ok: true });
  });

  it('forgets the least recently used key past maxKeys, and refuses bad bounds with BAD_CONFIG', async () => {
    const answers = new KeyedAnswers<{ key: string }>({ maxKeys: 2 });
    for (const key of ['a', 'b', 'c']) await answers.run(key, async () => ({ key }));
    assert.equal(answers.size, 2);
    assert.deepEqual(await answers.run('a', async () => ({ key: 'a again' })), { key: 'a again' });
    assert.throws(() => new KeyedAnswers({ maxKeys: 0 }), { code: 'BAD_CONFIG' });
    assert.throws(() => new KeyedAnswers({ ttlMs: 0 }), { code: 'BAD_CONFIG' });
  });
});
