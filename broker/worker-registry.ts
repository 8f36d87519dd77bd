import type { MdpVersion, ReadyExtension } from '../shared/protocol.ts';
import type { WorkerInfo } from '../shared/messages.ts';
import type { ServedModelVersions } from '../shared/models.ts';
import type { SendQueue } from '../shared/send-queue.ts';
import type { PendingRequest } from './pending-request.ts';

/** What the broker knows of one connected worker. */
export interface WorkerRecord {
  /** ROUTER identity frame. */
  identity: Buffer;
  /** Identity as a map key (hex). */
  id: string;
  via: SendQueue;
  version: MdpVersion;
  /** Whether it registered with Zerve's READY extension (and so gets the service frame). */
  extended: boolean;
  services: Set<string>;
  /** Services whose in-flight requests are resent when the worker dies (declared in READY). */
  idempotent: Set<string>;
  /** Whether it asked for the caller frame in READY (ReadyExtension.caller). */
  caller: boolean;
  /** Longest deadline of a service's requests, where the worker declared one in READY. */
  maxDeadlineMs: Map<string, number>;
  capacity: number;
  /** True once it announced it is stopping: it gets no new requests. */
  draining: boolean;
  /** By dispatch token. */
  inFlight: Map<number, PendingRequest>;
  kind: string;
  host: string;
  pid: number | null;
  /** Models with versions, from the READY extension (inference workers). */
  models?: ServedModelVersions[];
  /** `performance.now()` after which the worker counts as gone. */
  expiry: number;
  lastSeen: number;
  /** Dispatch counter, for least-recently-used choice among equally loaded workers. */
  lastDispatch: number;
}

/** Workers by identity and by service. */
export class WorkerRegistry {
  private readonly byId = new Map<string, WorkerRecord>();
  private readonly byService = new Map<string, Set<WorkerRecord>>();

  get size(): number {
    return this.byId.size;
  }

  get(id: string): WorkerRecord | undefined {
    return this.byId.get(id);
  }

  all(): IterableIterator<WorkerRecord> {
    return this.byId.values();
  }

  /** Workers offering `service` (live set; do not mutate). */
  forService(service: string): ReadonlySet<WorkerRecord> | undefined {
    return this.byService.get(service);
  }

  /** Every service some worker offers. */
  services(): IterableIterator<string> {
    return this.byService.keys();
  }

  add(record: WorkerRecord): void {
    this.byId.set(record.id, record);
    for (const service of record.services) this.link(service, record);
  }

  /** Replaces a worker's services (a READY update from a worker using the extension). */
  updateServices(record: WorkerRecord, extension: ReadyExtension): void {
    for (const service of record.services) this.unlink(service, record);
    record.services = new Set(extension.services);
    record.idempotent = new Set(extension.idempotent);
    record.caller = extension.caller === true;
    record.maxDeadlineMs = new Map(Object.entries(extension.maxDeadlineMs ?? {}));
    record.capacity = extension.capacity;
    record.draining = extension.draining === true;
    if (extension.models) record.models = extension.models;
    else delete record.models;
    for (const service of record.services) this.link(service, record);
  }

  remove(record: WorkerRecord): void {
    this.byId.delete(record.id);
    for (const service of record.services) this.unlink(service, record);
  }

  /** Picks the least loaded worker with free capacity for `service`, least recently used first. */
  pick(service: string): WorkerRecord | undefined {
    const workers = this.byService.get(service);
    if (!workers) return undefined;
    let best: WorkerRecord | undefined;
    let bestLoad = Infinity;
    for (const worker of workers) {
      if (worker.draining || worker.inFlight.size >= worker.capacity) continue;
      const load = worker.inFlight.size / worker.capacity;
      if (load < bestLoad || (load === bestLoad && worker.lastDispatch < best!.lastDispatch)) {
        best = worker;
        bestLoad = load;
      }
    }
    return best;
  }

  info(record: WorkerRecord, now: number): WorkerInfo {
    return {
      id: record.id,
      kind: record.kind,
      host: record.host,
      pid: record.pid,
      protocol: record.version === 2 ? 'MDP/0.2' : 'MDP/0.1',
      services: [...record.services],
      capacity: record.capacity,
      inFlight: record.inFlight.size,
      lastSeenMs: Math.round(now - record.lastSeen),
      ...(record.models ? { models: record.models } : {}),
      ...(record.draining ? { draining: true } : {}),
    };
  }

  private link(service: string, record: WorkerRecord): void {
    let set = this.byService.get(service);
    if (!set) this.byService.set(service, (set = new Set()));
    set.add(record);
  }

  private unlink(service: string, record: WorkerRecord): void {
    const set = this.byService.get(service);
    if (!set) return;
    set.delete(record);
    if (set.size === 0) this.byService.delete(service);
  }
}
