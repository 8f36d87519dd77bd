/**
 * The broker section's client rows: the echo path through `ZerveClient` (one socket, tagged requests)
 * against the design it replaced (a DEALER per request in flight) at the same concurrency, with the
 * CPU each process spends per request. The bare DEALER row of the broker section is the baseline.
 */
import { ZerveClient } from '../../shared/client.ts';
import { ECHO_SERVICE } from '../../shared/protocol.ts';
import type { PipelinedResult, RoundTripResult } from './echo-load.ts';
import { runLoad, type LoadResult } from './load-runner.ts';
import { withProcessCpu } from './process-cpu.ts';
import { SocketPoolEcho } from './socket-pool-echo.ts';
import { fixed } from './report-format.ts';

/** Requests in flight for the client rows. */
export const CLIENT_CONCURRENCIES = [16, 256];
export const POOL_PATH = 'socket per request (the former ZerveClient design)';
export const CLIENT_PATH = 'ZerveClient.request, one socket, tagged';
export const BARE_PATH_PREFIX = 'broker: DEALER';

export interface ClientRow {
  path: string;
  pipelined?: PipelinedResult | LoadResult;
  roundTrip?: RoundTripResult;
  cpuUsPerRequest?: Record<string, number | undefined>;
  note: string;
}

export interface ClientSectionOptions {
  /** Broker frontend with an echo worker behind it. */
  endpoint: string;
  /** Processes whose CPU is counted: `client` (this one), `broker`, `worker`. */
  pids: Record<string, number>;
  warmUpMs: number;
  durationMs: number;
  progress: (message: string) => void;
}

function perRequest(cpuUs: Record<string, number | undefined>, requests: number): Record<string, number | undefined> {
  return Object.fromEntries(Object.entries(cpuUs).map(([name, us]) => [name, us === undefined || requests === 0 ? undefined : us / requests]));
}

export async function benchClients(options: ClientSectionOptions): Promise<ClientRow[]> {
  const { endpoint, pids, warmUpMs, durationMs, progress } = options;
  const rows: ClientRow[] = [];
  const client = new ZerveClient({ broker: endpoint });
  const pool = new SocketPoolEcho(endpoint);
  const payload = Buffer.alloc(64, 0x61);
  const viaClient = async () => {
    const [body] = await client.request(ECHO_SERVICE, [payload]);
    if (!body?.equals(payload)) throw new Error('not an echo of the request');
  };
  try {
    progress('broker echo through ZerveClient: concurrency 1');
    const one = await runLoad(viaClient, { concurrency: 1, warmUpMs, durationMs });
    const roundTrip = { count: one.completed, p50Us: one.p50Ms * 1000, p99Us: one.p99Ms * 1000, perSecond: one.perSecond };
    for (const concurrency of CLIENT_CONCURRENCIES) {
      for (const [name, task] of [
        [POOL_PATH, () => pool.echo()],
        [CLIENT_PATH, viaClient],
      ] as const) {
        progress(`broker echo, ${name}: concurrency ${concurrency}`);
        await runLoad(task, { concurrency, warmUpMs: 0, durationMs: warmUpMs });
        const { result, cpuUs } = await withProcessCpu(pids, () => runLoad(task, { concurrency, warmUpMs: 0, durationMs }));
        rows.push({
          path: `${name} -> broker -> echo worker (${concurrency} concurrent)`,
          pipelined: result,
          ...(name === CLIENT_PATH && concurrency === CLIENT_CONCURRENCIES[0] ? { roundTrip } : {}),
          cpuUsPerRequest: perRequest(cpuUs, result.completed),
          note: name === CLIENT_PATH ? 'round trip: ZerveClient at concurrency 1' : 'a DEALER per request in flight, plain REQUEST',
        });
      }
    }
  } finally {
    pool.close();
    await client.close();
  }
  return rows;
}

/** One line per concurrency: the client process's CPU per request against the bare DEALER's and the socket pool's. */
export function clientCpuSummary(rows: ClientRow[]): string[] {
  const clientCpu = (row: ClientRow | undefined) => row?.cpuUsPerRequest?.client;
  const bare = clientCpu(rows.find((r) => r.path.startsWith(BARE_PATH_PREFIX)));
  return CLIENT_CONCURRENCIES.map((concurrency) => {
    const of = (name: string) => rows.find((r) => r.path.startsWith(name) && r.path.endsWith(`(${concurrency} concurrent)`));
    const mine = clientCpu(of(CLIENT_PATH));
    const pool = clientCpu(of(POOL_PATH));
    const over = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : a / b);
    return (
      `client CPU per request at concurrency ${concurrency}: ZerveClient ${fixed(mine, 2)} us = ${fixed(over(mine, bare), 2)}x the bare DEALER's, ` +
      `${fixed(over(mine, pool), 2)}x the socket-per-request design's (${fixed(pool, 2)} us).`
    );
  });
}
