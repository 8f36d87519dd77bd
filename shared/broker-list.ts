/**
 * Lists of brokers: every option that names a broker (`--broker`, `--connect` and their `ZERVE_*`
 * forms) takes one endpoint or several separated by commas; a config file's array arrives here as
 * the same string (shared/config.ts). `--broker-key` pairs with them: one key file for every broker,
 * or one per broker in the same order.
 */
import { ZerveError } from './errors.ts';

/** The endpoints of a broker list, trimmed; BAD_CONFIG when it names none or one twice. */
export function parseBrokerList(value: string, option: string): string[] {
  const endpoints = value.split(',').map((e) => e.trim());
  if (endpoints.some((e) => e === '')) {
    throw new ZerveError('BAD_CONFIG', `--${kebab(option)} must be one broker endpoint or several separated by commas, got ${JSON.stringify(value)}`);
  }
  const twice = endpoints.find((e, i) => endpoints.indexOf(e) !== i);
  if (twice !== undefined) throw new ZerveError('BAD_CONFIG', `--${kebab(option)} names ${twice} twice`);
  return endpoints;
}

/**
 * The broker key file for each of `count` brokers: '' (no CURVE) for all, one file for all, or a list
 * of exactly `count` files in the order of the endpoints; BAD_CONFIG otherwise.
 */
export function pairBrokerKeys(brokerKey: string, count: number): string[] {
  if (brokerKey === '') return Array.from({ length: count }, () => '');
  const keys = brokerKey.split(',').map((k) => k.trim());
  if (keys.length === 1) return Array.from({ length: count }, () => keys[0]!);
  if (keys.length !== count || keys.some((k) => k === '')) {
    throw new ZerveError('BAD_CONFIG', `--broker-key must name one key file for every broker or one per broker (${count}), got ${keys.length}: ${JSON.stringify(brokerKey)}`);
  }
  return keys;
}

/**
 * The endpoint of the `index`-th extra broker beside the one at `endpoint` (`zerve up --brokers`):
 * a TCP port 2 × index higher (each broker has a frontend and a backend port), or an ipc path with
 * `-<index>` appended.
 */
export function siblingEndpoint(endpoint: string, index: number): string {
  const tcp = /^(tcp:\/\/.*):(\d+)$/.exec(endpoint);
  if (tcp) return `${tcp[1]}:${Number(tcp[2]) + 2 * index}`;
  if (endpoint.startsWith('ipc://') || endpoint.startsWith('inproc://')) return `${endpoint}-${index}`;
  throw new ZerveError('BAD_CONFIG', `cannot place another broker beside ${endpoint}: use tcp://host:port or ipc://path`);
}

function kebab(option: string): string {
  return option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
