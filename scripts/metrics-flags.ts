import type { Command } from 'commander';
import type { Registry } from 'prom-client';
import { DEFAULT_METRICS_OPTIONS, resolveOptions } from '../shared/config.ts';
import { startMetricsServer, type MetricsServer } from '../shared/metrics-server.ts';

/** Adds `--metrics-port` and `--metrics-host` (and, for workers, `--metrics-interval-ms`) to a command. */
export function addMetricsOptions(command: Command, worker = false): Command {
  command
    .option('--metrics-port <port>', 'serve /metrics and /healthz on this port (default: off; 0 picks a free one)')
    .option('--metrics-host <host>', 'address the metrics server listens on (default: 127.0.0.1)');
  if (worker) command.option('--metrics-interval-ms <ms>', "how often the worker's metrics ride on a heartbeat to the broker");
  return command;
}

/** Starts the metrics server the flags ask for (none unless `--metrics-port` or its variable is set). */
export function serveMetrics(flags: Record<string, unknown>, registries: readonly Registry[]): Promise<MetricsServer | undefined> {
  return startMetricsServer(resolveOptions(DEFAULT_METRICS_OPTIONS, flags), registries);
}
