import assert from 'node:assert/strict';
import { prettyLogs } from '../shared/logger.ts';

describe('logger format', () => {
  it('pretty-prints on a terminal, JSON otherwise or when ZERVE_LOG_FORMAT=json', () => {
    assert.equal(prettyLogs({}, true), true);
    assert.equal(prettyLogs({}, false), false);
    assert.equal(prettyLogs({ ZERVE_LOG_FORMAT: 'json' }, true), false);
  });
});
