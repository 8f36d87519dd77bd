import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pairBrokerKeys, parseBrokerList, siblingEndpoint } from '../shared/broker-list.ts';
import { ZerveClient } from '../shared/client.ts';
import { DEFAULT_CLIENT_OPTIONS, DEFAULT_WORKER_CONNECTION_OPTIONS, resolveOptions } from '../shared/config.ts';
import { ZerveError } from '../shared/errors.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { tempDir } from './helpers/cluster.ts';

const badRequest = (fn: () => unknown) => assert.throws(fn, (err: unknown) => err instanceof ZerveError && err.code === 'BAD_CONFIG');

describe('lists of brokers', () => {
  it('reads one endpoint as before, and several separated by commas, trimmed', () => {
    assert.deepEqual(parseBrokerList('tcp://a:5555', 'broker'), ['tcp://a:5555']);
    assert.deepEqual(parseBrokerList('tcp://a:5555, tcp://b:5555', 'broker'), ['tcp://a:5555', 'tcp://b:5555']);
  });

  it('refuses an empty entry or an endpoint named twice with BAD_CONFIG', () => {
    for (const value of ['', 'tcp://a:5555,', ',tcp://a:5555', 'tcp://a:5555,,tcp://b:5555']) badRequest(() => parseBrokerList(value, 'connect'));
    badRequest(() => parseBrokerList('tcp://a:5555,tcp://a:5555', 'broker'));
  });

  it('pairs --broker-key with the brokers: none, one for all, or one each in order; another count is BAD_CONFIG', () => {
    assert.deepEqual(pairBrokerKeys('', 2), ['', '']);
    assert.deepEqual(pairBrokerKeys('k.pub', 2), ['k.pub', 'k.pub']);
    assert.deepEqual(pairBrokerKeys('a.pub,b.pub', 2), ['a.pub', 'b.pub']);
    badRequest(() => pairBrokerKeys('a.pub,b.pub', 3));
    badRequest(() => pairBrokerKeys('a.pub,', 2));
  });

  it('places the brokers of zerve up --brokers on the next ports, or beside an ipc path; anything else is BAD_CONFIG', () => {
    assert.equal(siblingEndpoint('tcp://127.0.0.1:5555', 1), 'tcp://127.0.0.1:5557');
    assert.equal(siblingEndpoint('tcp://127.0.0.1:5556', 2), 'tcp://127.0.0.1:5560');
    assert.equal(siblingEndpoint('ipc:///tmp/zerve.sock', 1), 'ipc:///tmp/zerve.sock-1');
    badRequest(() => siblingEndpoint('tcp://*', 1));
  });

  it('takes a list from a flag, a ZERVE_* variable and an array in a config file alike', async () => {
    const dir = await tempDir('zerve-brokers-config-');
    try {
      const config = join(dir.path, 'zerve.json');
      await writeFile(config, JSON.stringify({ connect: ['tcp://a:5556', 'tcp://b:5556'], broker: ['tcp://a:5555', 'tcp://b:5555'] }));
      assert.equal(resolveOptions(DEFAULT_WORKER_CONNECTION_OPTIONS, { config }, {}).connect, 'tcp://a:5556,tcp://b:5556');
      assert.equal(resolveOptions(DEFAULT_CLIENT_OPTIONS, { config }, {}).broker, 'tcp://a:5555,tcp://b:5555');
      assert.equal(resolveOptions(DEFAULT_CLIENT_OPTIONS, {}, { ZERVE_BROKER: 'tcp://a:5555,tcp://b:5555' }).broker, 'tcp://a:5555,tcp://b:5555');
      assert.equal(resolveOptions(DEFAULT_CLIENT_OPTIONS, { broker: 'tcp://c:5555,tcp://d:5555' }, {}).broker, 'tcp://c:5555,tcp://d:5555');
    } finally {
      await dir.remove();
    }
  });

  it('refuses a bad list when a client or a worker connection is made, before anything connects', () => {
    badRequest(() => new ZerveClient({ broker: 'tcp://a:5555,' }));
    badRequest(() => new ZerveClient({ broker: 'tcp://a:5555,tcp://b:5555', brokerKey: 'a.pub,b.pub,c.pub', clientAuth: 'curve' }));
    badRequest(() => new WorkerConnection(['echo'], async (b) => b, { connect: 'tcp://a:5556,tcp://a:5556' }));
    badRequest(() => new WorkerConnection(['echo'], async (b) => b, { connect: 'tcp://a:5556', creditIdleMs: -1 }));
  });
});
