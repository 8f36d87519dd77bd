/**
 * The one pino root logger. Level from `ZERVE_LOG_LEVEL` (default `info`; tests set `silent` or `warn`).
 * Components take a child: `logger.child({ component: 'broker' })`.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export const logger: Logger = pino({
  name: 'zerve',
  level: process.env.ZERVE_LOG_LEVEL ?? 'info',
  base: { pid: process.pid },
});
