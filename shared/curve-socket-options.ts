/**
 * CURVE options of the sockets that connect to the broker, from `--curve-key`, `--broker-key` and
 * `--client-auth` (shared/config.ts `CurveOptions`). Key files are read once, when a component is made.
 */
import * as zmq from 'zeromq';
import type { CurveOptions } from './config.ts';
import { readKeyPair, readPublicKey, type CurveKeyPair } from './curve-keys.ts';
import { ZerveError } from './errors.ts';

export type ClientAuth = 'plain' | 'curve' | 'allowlist';
export const CLIENT_AUTH_MODES: readonly ClientAuth[] = ['plain', 'curve', 'allowlist'];

/** Fails clearly when this zeromq build has no CURVE (libzmq without libsodium). */
export function assertCurveAvailable(): void {
  if (!zmq.capability.curve) throw new ZerveError('BAD_CONFIG', 'this zeromq build has no CURVE support (zmq.capability.curve is false); run without CURVE keys');
}

/** Checks a `--client-auth` value. */
export function parseClientAuth(value: string): ClientAuth {
  if ((CLIENT_AUTH_MODES as readonly string[]).includes(value)) return value as ClientAuth;
  throw new ZerveError('BAD_CONFIG', `--client-auth must be one of ${CLIENT_AUTH_MODES.join(', ')}, got ${JSON.stringify(value)}`);
}

/** zeromq.js options of a CURVE client socket. */
export interface CurveClientSocketOptions {
  curveServerKey: string;
  curvePublicKey: string;
  curveSecretKey: string;
}

/** What a worker connection needs for CURVE: its socket options and its key pair (for the READY key proof). */
export interface WorkerCurve {
  socketOptions: CurveClientSocketOptions;
  keyPair: CurveKeyPair;
  brokerPublicKey: string;
}

/** A worker's CURVE setup, or undefined without `--broker-key`. A worker needs its own key: the broker admits listed keys only. */
export function workerCurve(o: CurveOptions): WorkerCurve | undefined {
  if (o.brokerKey === '') return undefined;
  if (o.curveKey === '') {
    throw new ZerveError('BAD_CONFIG', '--broker-key needs --curve-key too: a worker authenticates with its own key pair (zerve keys generate NAME)');
  }
  assertCurveAvailable();
  const keyPair = readKeyPair(o.curveKey);
  const brokerPublicKey = readPublicKey(o.brokerKey);
  return { keyPair, brokerPublicKey, socketOptions: { curveServerKey: brokerPublicKey, curvePublicKey: keyPair.publicKey, curveSecretKey: keyPair.secretKey } };
}

/**
 * Options of a client socket (to the broker's client socket): CURVE when `--broker-key` is given and
 * `--client-auth` is not `plain`; with no `--curve-key`, a fresh key pair (enough for `curve` mode).
 */
export function clientCurveSocketOptions(o: CurveOptions): CurveClientSocketOptions | Record<string, never> {
  if (o.brokerKey === '' || parseClientAuth(o.clientAuth) === 'plain') return {};
  assertCurveAvailable();
  const keyPair = o.curveKey !== '' ? readKeyPair(o.curveKey) : zmq.curveKeyPair();
  return { curveServerKey: readPublicKey(o.brokerKey), curvePublicKey: keyPair.publicKey, curveSecretKey: keyPair.secretKey };
}

/** The `CurveOptions` fields of a larger options object, to hand to a client or worker connection. */
export function curveOptionsOf(o: CurveOptions): CurveOptions {
  return { curveKey: o.curveKey, brokerKey: o.brokerKey, clientAuth: o.clientAuth, insecure: o.insecure };
}
