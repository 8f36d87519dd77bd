/**
 * The one pino root logger. Level from `ZERVE_LOG_LEVEL` (default `info`; tests set `silent` or `warn`).
 * Components take a child: `logger.child({ component: 'broker' })`.
 *
 * Format: JSON lines on stdout, unless stderr is a terminal (someone runs `npm start` and reads
 * it): then pino-pretty lines on stderr, beside the human progress lines. `ZERVE_LOG_FORMAT=json`
 * keeps JSON on a terminal too.
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

const options = { name: 'zerve', level: process.env.ZERVE_LOG_LEVEL ?? 'info', base: { pid: process.pid } };

/** Whether logs are pretty-printed: stderr is a TTY and ZERVE_LOG_FORMAT is not `json`. */
export function prettyLogs(env: NodeJS.ProcessEnv = process.env, stderrIsTty = process.stderr.isTTY === true): boolean {
  return stderrIsTty && env.ZERVE_LOG_FORMAT !== 'json';
}

export const logger: Logger = prettyLogs()
  ? pino(options, pretty({ destination: 2, sync: true, colorize: true, ignore: 'pid,hostname,name', translateTime: 'SYS:HH:MM:ss.l' }))
  : pino(options);
