import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Every token starts with this, so secret scanners and people recognise one. */
export const TOKEN_PREFIX = 'zrv_';

const ID_BYTES = 6;
const SECRET_BYTES = 32;
const TOKEN_PATTERN = /^zrv_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

/** A freshly made token: `token` is shown once, only `hash` is stored. */
export interface IssuedToken {
  id: string;
  token: string;
  hash: string;
}

/** Makes a token `zrv_<id>_<secret>`: the public id finds its row, the secret proves it. */
export function issueToken(): IssuedToken {
  const id = randomBytes(ID_BYTES).toString('hex');
  const token = `${TOKEN_PREFIX}${id}_${randomBytes(SECRET_BYTES).toString('base64url')}`;
  return { id, token, hash: hashToken(token) };
}

/** SHA-256 of the whole token, hex: what the store keeps. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The id inside a well-formed token, or undefined for anything else. */
export function tokenIdOf(token: string): string | undefined {
  return TOKEN_PATTERN.exec(token)?.[1];
}

/** Whether `token` hashes to `storedHash`, compared in constant time (both are 32-byte digests). */
export function tokenMatches(token: string, storedHash: string): boolean {
  const presented = createHash('sha256').update(token).digest();
  const stored = Buffer.from(storedHash, 'hex');
  return stored.length === presented.length && timingSafeEqual(presented, stored);
}
