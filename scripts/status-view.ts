/**
 * `zerve status` for people: the services, then the workers grouped by host, each with its kind,
 * pid, the models it serves with their versions, capacity and in-flight count (from `mmi.workers`).
 */
import Table from 'cli-table3';
import type { ServiceInfo, WorkerInfo } from '../shared/messages.ts';
import { CLASSIFY_PREFIX, MODELS_DESCRIBE } from '../shared/protocol.ts';
import { MODELS_FETCH_PREFIX, MODELS_REMOVED_PREFIX } from '../shared/models.ts';

/** A holder's per-version services (versions held, tombstones kept): counted, not listed. */
const isModelHolding = (service: string) => service.startsWith(MODELS_FETCH_PREFIX) || service.startsWith(MODELS_REMOVED_PREFIX);

/** Workers by host name, hosts sorted, each host's workers by pid. */
export function workersByHost(workers: readonly WorkerInfo[]): Map<string, WorkerInfo[]> {
  const hosts = new Map<string, WorkerInfo[]>();
  for (const w of [...workers].sort((a, b) => a.host.localeCompare(b.host) || (a.pid ?? 0) - (b.pid ?? 0) || a.kind.localeCompare(b.kind))) {
    if (!hosts.has(w.host)) hosts.set(w.host, []);
    hosts.get(w.host)!.push(w);
  }
  return hosts;
}

/** What a worker does, briefly: its models with versions, else its services (per-version fetch services counted). */
function describe(w: WorkerInfo): string {
  if (w.models && w.models.length > 0) return w.models.map((m) => `${m.name} ${m.versions.map((v) => (v === m.latest ? `${v}*` : v)).join(',')}`).join('; ');
  const held = w.services.filter((s) => s.startsWith(MODELS_FETCH_PREFIX)).length;
  // A worker's own per-worker names (`runs.list.<host>-<pid>-<tag>`, `train.cancel.…`) only repeat what it offers.
  const own = `${w.host}-${w.pid ?? ''}-`;
  const removed = w.services.filter((s) => s.startsWith(MODELS_REMOVED_PREFIX)).length;
  const others = w.services.filter((s) => !isModelHolding(s) && !s.startsWith(CLASSIFY_PREFIX) && s !== MODELS_DESCRIBE && !s.includes(own));
  return [...others, ...(held > 0 ? [`holds ${held} model version(s)`] : []), ...(removed > 0 ? [`keeps ${removed} removal(s)`] : [])].join(', ');
}

export function formatStatus(services: readonly ServiceInfo[], workers: readonly WorkerInfo[]): string {
  const serviceTable = new Table({ head: ['service', 'workers', 'capacity', 'in flight', 'queued'] });
  for (const s of services.filter((s) => !isModelHolding(s.name))) serviceTable.push([s.name, s.workers, s.capacity, s.inFlight, s.queued]);
  const lines = [serviceTable.toString()];
  for (const [host, list] of workersByHost(workers)) {
    const table = new Table({ head: ['kind', 'pid', 'models (* latest) / services', 'capacity', 'in flight', 'protocol', 'worker'] });
    for (const w of list) table.push([w.kind, w.pid ?? '', describe(w), w.capacity, w.inFlight, w.protocol, w.id]);
    lines.push(`host ${host}: ${list.length} worker connection(s)`, table.toString());
  }
  return lines.join('\n') + '\n';
}
