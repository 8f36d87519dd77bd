import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import * as zmq from 'zeromq';
import type { BrokerSecurityOptions } from '../shared/config.ts';
import { readKeyPair, type CurveKeyPair } from '../shared/curve-keys.ts';
import { assertCurveAvailable, parseClientAuth, type ClientAuth } from '../shared/curve-socket-options.ts';
import { ZerveError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { SecurityInfo } from '../shared/messages.ts';
import { headerSpeaksFor } from '../shared/messages.ts';
import { ANONYMOUS_CALLER, encodeCaller, type CallerIdentity, type ReadyExtension } from '../shared/protocol.ts';
import { verifyKeyProof, type KeyProof } from '../shared/key-proof.ts';
import { ClientUsers } from './client-users.ts';
import { watchSocketEvents } from '../shared/socket-events.ts';
import { KeyAllowlist } from './key-allowlist.ts';
import { RefusalLog } from './refusal-log.ts';
import { ZapHandler, type KeyPolicy } from './zap-handler.ts';

export const WORKERS_DOMAIN = 'workers';
export const CLIENTS_DOMAIN = 'clients';
/** Revoked routing ids remembered (each is one dead connection); the oldest go first past this. */
const MAX_BANNED = 10_000;
/** Client connections whose proved key the broker remembers; the oldest go first past this. */
const MAX_IDENTIFIED = 100_000;
const ANONYMOUS_FRAME = encodeCaller(ANONYMOUS_CALLER);

/** Whether an endpoint can only be reached from this host: inproc, ipc, or a loopback address. */
export function isLoopbackEndpoint(endpoint: string): boolean {
  if (endpoint.startsWith('inproc://') || endpoint.startsWith('ipc://')) return true;
  const host = /^tcp:\/\/(?:[^;]*;)?(\[[^\]]*\]|[^:]*):/.exec(endpoint)?.[1];
  return host !== undefined && (/^127\.\d+\.\d+\.\d+$/.test(host) || host === 'localhost' || host === '[::1]');
}

/** Why a READY was refused, or the key it proved. */
export type WorkerAdmission = { ok: true; publicKey?: string } | { ok: false; reason: string };

/**
 * The broker's authentication: CURVE on the worker socket with an allowlist (ZAP handler on the
 * broker's own context), CURVE or plain on the client socket, the secure-by-default check, and the
 * link from registered workers to their keys so that a revoked key drops its worker.
 *
 * Events: `'revoked'` (worker ids, hex) after an allowlist reload removed the keys of those workers.
 */
export class BrokerSecurity extends EventEmitter {
  /** The context the broker's sockets and the ZAP handler share; undefined without CURVE (the default context). */
  readonly context?: zmq.Context;
  readonly clientAuth: ClientAuth;
  private readonly keyPair?: CurveKeyPair;
  private readonly workerKeys?: KeyAllowlist;
  private readonly clientKeys?: KeyAllowlist;
  private readonly users?: ClientUsers;
  /** Client connections' proved keys (`mmi.identify`), by routing id (latin1). */
  private readonly keyOfClient = new Map<string, string>();
  private readonly refusals: RefusalLog;
  private readonly zap?: ZapHandler;
  /** Registered workers' proved keys, by worker id (hex routing id). */
  private readonly keyOf = new Map<string, string>();
  /** Routing ids (latin1) whose key was revoked: everything they send is dropped. */
  private readonly banned = new Set<string>();
  /** The ends of the socket event watches, which end when the broker's sockets close. */
  private readonly watches: Promise<void>[] = [];
  private readonly onHangup = () => this.reload('SIGHUP');
  private closed = false;

  constructor(private readonly options: BrokerSecurityOptions & { backend: string; frontend: string }, private readonly log: Logger) {
    super();
    const o = options;
    this.clientAuth = parseClientAuth(o.clientAuth);
    this.refusals = new RefusalLog(log);
    if (o.curveKey === '') {
      if (o.authorizedWorkers !== '' || this.clientAuth !== 'plain' || o.clientUsers !== '') {
        throw new ZerveError('BAD_CONFIG', '--authorized-workers, --client-users and --client-auth curve|allowlist need the broker\'s --curve-key (zerve keys generate broker)');
      }
      if (!isLoopbackEndpoint(o.backend) && !o.insecure) {
        throw new ZerveError(
          'BAD_CONFIG',
          `refusing to start: the worker socket ${o.backend} is reachable from other hosts and has no CURVE key, so anyone who ` +
            'reaches it could register as a worker and receive users\' requests. Give --curve-key FILE (zerve keys generate broker) ' +
            'and --authorized-workers PATH, bind a loopback address, or pass --insecure to run it open anyway.',
        );
      }
      return;
    }
    assertCurveAvailable();
    this.keyPair = readKeyPair(o.curveKey);
    if (o.authorizedWorkers !== '') this.workerKeys = new KeyAllowlist(o.authorizedWorkers, log.child({ allowlist: WORKERS_DOMAIN }));
    if (this.clientAuth === 'allowlist') {
      if (o.authorizedClients === '') throw new ZerveError('BAD_CONFIG', '--client-auth allowlist needs --authorized-clients PATH');
      this.clientKeys = new KeyAllowlist(o.authorizedClients, log.child({ allowlist: CLIENTS_DOMAIN }));
    }
    if (o.clientUsers !== '') {
      if (this.clientAuth === 'plain') throw new ZerveError('BAD_CONFIG', '--client-users needs --client-auth curve or allowlist: a plain client proves no key');
      this.users = new ClientUsers(o.clientUsers, log.child({ component: 'client-users' }));
    }
    this.context = new zmq.Context();
    const own = this.keyPair.publicKey;
    // The broker's own key is always admitted: `zerve up` hands it to the workers it starts.
    const policies = new Map<string, KeyPolicy>([[WORKERS_DOMAIN, (key) => key === own || (this.workerKeys?.has(key) ?? false)]]);
    if (this.clientAuth === 'curve') policies.set(CLIENTS_DOMAIN, () => true);
    if (this.clientAuth === 'allowlist') policies.set(CLIENTS_DOMAIN, (key) => key === own || this.clientKeys!.has(key));
    this.zap = new ZapHandler(this.context, policies, this.refusals, log.child({ component: 'zap' }));
    this.workerKeys?.on('change', () => this.revokeRemoved());
  }

  /** Whether the worker socket uses CURVE (and READY must carry a key proof). */
  get workerCurve(): boolean {
    return this.keyPair !== undefined;
  }

  /** ZAP handler bound, allowlists watched, SIGHUP reloads; call before binding the broker's sockets. */
  async start(): Promise<void> {
    await this.zap?.start();
    this.workerKeys?.watch();
    this.clientKeys?.watch();
    this.users?.watch();
    if (this.workerKeys || this.clientKeys || this.users) process.on('SIGHUP', this.onHangup);
    if (this.options.insecure && this.keyPair === undefined && !isLoopbackEndpoint(this.options.backend)) {
      this.log.warn({ backend: this.options.backend }, 'INSECURE: the worker socket has no CURVE (--insecure); anyone who reaches it can register as a worker');
    }
  }

  /** Socket options (context, CURVE server, ZAP domain) of the frontend or the backend socket. */
  socketOptions(role: 'frontend' | 'backend'): Partial<zmq.SocketOptions<zmq.Router>> {
    if (!this.keyPair) return {};
    const curve = role === 'backend' || this.clientAuth !== 'plain';
    return {
      context: this.context!,
      ...(curve ? { curveServer: true, curveSecretKey: this.keyPair.secretKey, zapDomain: role === 'backend' ? WORKERS_DOMAIN : CLIENTS_DOMAIN } : {}),
    };
  }

  /** Logs a socket's failed handshakes (a peer without CURVE, or with the wrong broker key), which ZAP never sees. */
  observe(socket: zmq.Router, role: 'frontend' | 'backend'): void {
    if (!this.keyPair || (role === 'frontend' && this.clientAuth === 'plain')) return;
    const domain = role === 'backend' ? WORKERS_DOMAIN : CLIENTS_DOMAIN;
    const ended = watchSocketEvents(
      socket,
      (event) => {
        if (event.type === 'handshake:error:protocol' || event.type === 'handshake:error:other') {
          const reason = 'handshake failed: no CURVE, or the wrong broker key';
          this.refusals.refused({ socket: domain, reason, address: event.address, detail: `${event.type} ${event.error.code}` });
        }
      },
      this.log,
    );
    if (ended) this.watches.push(ended);
  }

  /** Whether worker READY is taken on the client socket: only where no key could be bypassed by it. */
  workersOnFrontend(shared: boolean): boolean {
    return shared || (!this.keyPair && (this.options.insecure || isLoopbackEndpoint(this.options.frontend)));
  }

  /** Checks a new worker's READY on a CURVE worker socket: its key proof, and that the key is still admitted. */
  admitWorker(identity: Buffer, extension: ReadyExtension | undefined): WorkerAdmission {
    if (!this.keyPair) return { ok: true };
    const proof = extension?.keyProof;
    if (!proof) return { ok: false, reason: 'READY without a key proof on a CURVE worker socket (Zerve workers send one; see docs/operations.md)' };
    if (!verifyKeyProof(proof, this.keyPair.secretKey, identity)) return { ok: false, reason: 'READY with a key proof that does not verify' };
    if (!this.workerKeyAllowed(proof.publicKey)) return { ok: false, reason: 'READY from a key no longer in the allowlist' };
    this.keyOf.set(identity.toString('hex'), proof.publicKey);
    return { ok: true, publicKey: proof.publicKey };
  }

  /** Logs a refused READY (rate-limited) and drops everything from that routing id from now on. */
  refuseWorker(identity: Buffer, reason: string, publicKey?: string): void {
    this.refusals.refused({ socket: WORKERS_DOMAIN, reason, ...(publicKey ? { publicKey } : {}), address: `routing id ${identity.toString('hex')}` });
    this.ban(identity);
  }

  /** Forgets a removed worker's key. */
  forget(id: string): void {
    this.keyOf.delete(id);
  }

  keyOfWorker(id: string): string | undefined {
    return this.keyOf.get(id);
  }

  /** Whether a routing id was revoked or refused (its messages never reach MDP). */
  isBanned(identity: Buffer): boolean {
    return this.banned.size > 0 && this.banned.has(identity.toString('latin1'));
  }

  ban(identity: Buffer): void {
    if (this.banned.size >= MAX_BANNED) this.banned.delete(this.banned.values().next().value!);
    this.banned.add(identity.toString('latin1'));
  }

  /** Reloads the allowlists (SIGHUP); a removed key's workers are revoked. */
  reload(why: string): void {
    this.workerKeys?.reload(why);
    this.clientKeys?.reload(why);
    this.users?.reload(why);
  }

  /**
   * `mmi.identify`: a client connection proves its CURVE key (shared/key-proof.ts, bound to its
   * routing id), so that its requests carry its user. Answers an MMI status code.
   */
  identify(identity: Buffer, frame: Buffer | undefined): string {
    if (!this.users || !this.keyPair) return '501';
    let proof: KeyProof;
    try {
      proof = JSON.parse(frame?.toString() ?? '') as KeyProof;
    } catch {
      return '400';
    }
    if (typeof proof?.publicKey !== 'string' || typeof proof.mac !== 'string' || !verifyKeyProof(proof, this.keyPair.secretKey, identity)) return '400';
    const id = identity.toString('latin1');
    this.keyOfClient.delete(id);
    if (this.keyOfClient.size >= MAX_IDENTIFIED) this.keyOfClient.delete(this.keyOfClient.keys().next().value!);
    this.keyOfClient.set(id, proof.publicKey);
    return '200';
  }

  /**
   * The caller frame a worker gets with a request (ReadyExtension.caller) from the client with this
   * routing id (latin1): its user from `--client-users`; for a trusted client, the user its header
   * names (`asUser`, `asRole`); else anonymous. Without a user map: anonymous, with no lookup.
   */
  callerFrame(clientId: string, header: Buffer | undefined): Buffer {
    if (!this.users) return ANONYMOUS_FRAME;
    const key = this.keyOfClient.get(clientId);
    const entry = key === undefined ? undefined : this.users.get(key);
    if (!entry) return ANONYMOUS_FRAME;
    if (!entry.trusted) return entry.frame;
    const speaksFor = headerSpeaksFor(header);
    if (!speaksFor) return ANONYMOUS_FRAME;
    const role = speaksFor.role === 'admin' || speaksFor.role === 'viewer' ? speaksFor.role : 'member';
    return encodeCaller({ user: speaksFor.user, role } satisfies CallerIdentity);
  }

  info(): SecurityInfo {
    return { workers: this.keyPair ? 'curve' : 'plain', clients: this.clientAuth, insecure: this.options.insecure };
  }

  /** Stops the ZAP handler, watchers and observers; idempotent. Call after closing the broker's sockets. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    process.off('SIGHUP', this.onHangup);
    this.workerKeys?.close();
    this.clientKeys?.close();
    this.users?.close();
    // They end once the closed sockets' monitors stop; a bound, so that close never hangs on one.
    await Promise.race([Promise.all(this.watches), sleep(1000, undefined, { ref: false })]);
    await this.zap?.close();
  }

  private workerKeyAllowed(key: string): boolean {
    return key === this.keyPair?.publicKey || (this.workerKeys?.has(key) ?? false);
  }

  private revokeRemoved(): void {
    const revoked = [...this.keyOf].filter(([, key]) => !this.workerKeyAllowed(key)).map(([id]) => id);
    if (revoked.length > 0) this.emit('revoked', revoked);
  }
}
