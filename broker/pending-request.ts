import type { MdpVersion } from '../shared/protocol.ts';
import type { SendQueue } from '../shared/send-queue.ts';
import type { WorkerRecord } from './worker-registry.ts';

/** A client request the broker has accepted and not yet answered with a FINAL. */
export interface PendingRequest {
  /** ROUTER identity of the client. */
  client: Buffer;
  /** The identity as a map key (latin1), for the per-client fairness of `ServiceQueue`. */
  clientKey: string;
  /** Socket the client is on (frontend, or backend for a single-socket setup). */
  via: SendQueue;
  clientVersion: MdpVersion;
  service: string;
  serviceFrame: Buffer;
  body: Buffer[];
  /** Body bytes, counted against the queue's byte bound. */
  bytes: number;
  /** Correlation tag of a tagged client request, returned in every reply (never sent to workers). */
  tag: Buffer | undefined;
  /** `performance.now()` after which the request is answered TIMEOUT (or NO_WORKERS). */
  deadline: number;
  receivedAt: number;
  /** Times it was sent again after its worker died. */
  requeues: number;
  /** Token used as the client address towards the worker; new for every dispatch. */
  token?: number;
  worker?: WorkerRecord;
  /** Set once the client got its FINAL (a TIMEOUT while in flight); the worker's late reply is dropped. */
  answered?: boolean;
}
