/**
 * CURVE key files. `zerve keys generate NAME` writes `NAME.key` (mode 0600: the secret key, with its
 * public key) and `NAME.pub` (the public key alone), in the ZPL certificate format of czmq's zcert,
 * which pyzmq's `zmq.auth.load_certificate()` also reads:
 *
 *     metadata
 *     curve
 *         public-key = "<40 Z85 characters>"
 *         secret-key = "<40 Z85 characters>"     (NAME.key only)
 *
 * Lines starting with `#` are comments. Keys are Z85 text, as zeromq.js's socket options take them.
 */
import { createPrivateKey, createPublicKey, diffieHellman } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { readFileSync, statSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as zmq from 'zeromq';
import { ZerveError } from './errors.ts';
import { z85Decode, z85Encode } from './z85.ts';

export interface CurveKeyPair {
  /** Z85, 40 characters. */
  publicKey: string;
  /** Z85, 40 characters. */
  secretKey: string;
}

/** PKCS#8 / SPKI prefixes of a raw X25519 key, so node:crypto can use CURVE's raw 32 bytes. */
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

/** Whether `key` is a CURVE key in Z85 (40 characters, 32 bytes). */
export function isZ85Key(key: string): boolean {
  return key.length === 40 && z85Decode(key) !== undefined;
}

/** The public key of a secret key (both Z85). */
export function publicKeyOf(secretKey: string): string {
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, keyBytes(secretKey)]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return z85Encode(spki.subarray(spki.length - 32));
}

/** The X25519 shared secret of one side's secret key and the other side's public key (the same from both sides). */
export function sharedSecret(secretKey: string, peerPublicKey: string): Buffer {
  return diffieHellman({
    privateKey: createPrivateKey({ key: Buffer.concat([PKCS8_X25519, keyBytes(secretKey)]), format: 'der', type: 'pkcs8' }),
    publicKey: createPublicKey({ key: Buffer.concat([SPKI_X25519, keyBytes(peerPublicKey)]), format: 'der', type: 'spki' }),
  });
}

function keyBytes(key: string): Buffer {
  const bytes = isZ85Key(key) ? z85Decode(key) : undefined;
  if (!bytes) throw new ZerveError('BAD_REQUEST', 'not a CURVE key (40 Z85 characters)');
  return bytes;
}

function certificate(pair: { publicKey: string; secretKey?: string }, title: string): string {
  return [
    `#   ZeroMQ CURVE ${title} Certificate, written by zerve keys generate`,
    pair.secretKey ? '#   Secret: keep it on this host only, mode 0600.' : '#   Public: copy it to the hosts that must trust this one.',
    '',
    'metadata',
    'curve',
    `    public-key = "${pair.publicKey}"`,
    ...(pair.secretKey ? [`    secret-key = "${pair.secretKey}"`] : []),
    '',
  ].join('\n');
}

/**
 * Writes a new key pair as `<dir>/<name>.key` (mode 0600) and `<dir>/<name>.pub`; refuses to
 * overwrite existing files (a lost secret key cannot be recovered, and hosts trust the old public key).
 */
export async function generateKeyFiles(name: string, dir: string): Promise<{ keyFile: string; pubFile: string; publicKey: string }> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    throw new ZerveError('BAD_REQUEST', `key name must be letters, digits, '.', '_' or '-', got ${JSON.stringify(name)}`);
  }
  const pair = zmq.curveKeyPair();
  await mkdir(dir, { recursive: true });
  const keyFile = join(dir, `${name}.key`);
  const pubFile = join(dir, `${name}.pub`);
  try {
    await writeFile(keyFile, certificate(pair, 'Secret'), { mode: 0o600, flag: 'wx' });
    await chmod(keyFile, 0o600); // the umask may have narrowed it, never widened; make it exact
    await writeFile(pubFile, certificate({ publicKey: pair.publicKey }, 'Public'), { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new ZerveError('BAD_REQUEST', `${(err as NodeJS.ErrnoException).path} already exists; remove it first to make a new key`);
    }
    throw err;
  }
  return { keyFile, pubFile, publicKey: pair.publicKey };
}

function readField(file: string, text: string, field: 'public-key' | 'secret-key'): string | undefined {
  const match = new RegExp(`^\\s*${field}\\s*=\\s*"([^"]*)"\\s*$`, 'm').exec(text);
  if (!match) return undefined;
  if (!isZ85Key(match[1]!)) throw new ZerveError('BAD_CONFIG', `${file}: ${field} is not a CURVE key (40 Z85 characters)`);
  return match[1]!;
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ZerveError('BAD_CONFIG', `cannot read ${what} ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads this process's key pair from its `.key` file (`--curve-key`); its public key is derived from the secret. */
export function readKeyPair(file: string): CurveKeyPair {
  const text = readText(file, 'CURVE secret key file');
  const secretKey = readField(file, text, 'secret-key');
  if (!secretKey) throw new ZerveError('BAD_CONFIG', `${file} holds no secret-key: pass the .key file written by zerve keys generate, not the .pub`);
  const publicKey = publicKeyOf(secretKey);
  const written = readField(file, text, 'public-key');
  if (written !== undefined && written !== publicKey) {
    throw new ZerveError('BAD_CONFIG', `${file}: its public-key does not belong to its secret-key`);
  }
  return { publicKey, secretKey };
}

/** Reads a public key from a `.pub` file (`--broker-key`, allowlist entries). */
export function readPublicKey(file: string): string {
  const publicKey = readField(file, readText(file, 'CURVE public key file'), 'public-key');
  if (!publicKey) throw new ZerveError('BAD_CONFIG', `${file} holds no public-key`);
  return publicKey;
}

/**
 * Reads an allowlist: a folder of `.pub` files, or one file of public keys (`.pub` certificates
 * concatenated, or one Z85 key per line; `#` comments). Returns key → where it came from.
 */
export function readAllowlist(path: string): Map<string, string> {
  const keys = new Map<string, string>();
  let isFolder: boolean;
  try {
    isFolder = statSync(path).isDirectory();
  } catch (err) {
    throw new ZerveError('BAD_CONFIG', `cannot read allowlist ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (isFolder) {
    for (const name of readdirSync(path).filter((n) => n.endsWith('.pub')).sort()) {
      const file = join(path, name);
      keys.set(readPublicKey(file), file);
    }
    return keys;
  }
  const text = readText(path, 'allowlist');
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line === 'metadata' || line === 'curve') continue;
    const key = /^public-key\s*=\s*"([^"]*)"$/.exec(line)?.[1] ?? line;
    if (!isZ85Key(key)) throw new ZerveError('BAD_CONFIG', `${path}:${i + 1}: not a CURVE public key (40 Z85 characters)`);
    keys.set(key, `${path}:${i + 1}`);
  }
  return keys;
}
