/**
 * A worker's proof, inside its READY, of the CURVE key its connection authenticated with.
 *
 * Why: ZeroMQ's ZAP handler sees each handshake's public key, but neither the ZAP request (its
 * identity frame is the broker socket's own routing id, not the peer's) nor zeromq.js's messages
 * (no metadata) tell the broker which key a ROUTER peer used. To revoke a key the broker must know
 * which registered worker holds it; so the worker sends its public key and
 * `HMAC-SHA256(X25519(worker secret, broker public), "zerve-worker-key/1" || routing id)`, which
 * only the holder of that secret key can compute, bound to its connection's routing id, and sent
 * encrypted by CURVE. The broker computes the same value from its own secret key and the claimed
 * public key.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { sharedSecret } from './curve-keys.ts';

const CONTEXT = Buffer.from('zerve-worker-key/1');

/** A worker's claim of its public key, as sent in READY (`ReadyExtension.keyProof`). */
export interface KeyProof {
  /** The worker's CURVE public key, Z85. */
  publicKey: string;
  /** The HMAC above, base64. */
  mac: string;
}

function mac(secretKey: string, peerPublicKey: string, routingId: Buffer): Buffer {
  return createHmac('sha256', sharedSecret(secretKey, peerPublicKey)).update(CONTEXT).update(routingId).digest();
}

/** The worker's side: proves `publicKey` (its own) to the broker whose public key is `brokerPublicKey`. */
export function proveKey(own: { publicKey: string; secretKey: string }, brokerPublicKey: string, routingId: Buffer): KeyProof {
  return { publicKey: own.publicKey, mac: mac(own.secretKey, brokerPublicKey, routingId).toString('base64') };
}

/** The broker's side: whether `proof` was made by the holder of `proof.publicKey` for this routing id. */
export function verifyKeyProof(proof: KeyProof, brokerSecretKey: string, routingId: Buffer): boolean {
  let expected: Buffer;
  try {
    expected = mac(brokerSecretKey, proof.publicKey, routingId);
  } catch {
    return false; // not a CURVE key
  }
  const given = Buffer.from(proof.mac, 'base64');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
