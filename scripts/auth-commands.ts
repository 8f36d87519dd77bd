/**
 * `zerve users add|list`, `zerve tokens create|list|revoke` and `zerve audit`: users, API tokens
 * and the audit log in the auth store `--store` names (`ZERVE_STORE`; a `postgres://` URL every web
 * app replica shares), else the one of `--data` (`<data>/auth.sqlite`): the one a web app given the
 * same `--store` or `--data` reads.
 */
import { userInfo } from 'node:os';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { AuthAdmin } from '../shared/auth-admin.ts';
import { DEFAULT_WEB_AUTH_OPTIONS, resolveOptions } from '../shared/config.ts';
import { parseDurationMs } from '../shared/duration.ts';
import type { AuthStore } from '../shared/store/auth-store.ts';
import { logger } from '../shared/logger.ts';
import { openAuthStore } from '../shared/store/open-auth-store.ts';
import { reportError } from './cli-support.ts';

/** Runs `fn` on the store of `--store` (else `--data`), closing it after; errors print their code and set the exit code. */
async function withStore(flags: Record<string, unknown>, fn: (store: AuthStore, admin: AuthAdmin) => Promise<void>): Promise<void> {
  let store: AuthStore | undefined;
  try {
    const o = resolveOptions(DEFAULT_WEB_AUTH_OPTIONS, flags);
    store = await openAuthStore(o.store, o.data, logger.child({ component: 'cli' }));
    // The CLI acts as whoever runs it on this host: the store's file permissions (or its PostgreSQL role) are the check.
    await fn(store, new AuthAdmin(store, `local:${userInfo().username}`));
  } catch (err) {
    reportError(err);
  } finally {
    await store?.close();
  }
}

function print(json: boolean, value: unknown, table: () => string): void {
  process.stdout.write(json ? JSON.stringify(value) + '\n' : table() + '\n');
}

export function registerAuthCommands(program: Command): void {
  const withData = (command: Command) =>
    command
      .option('--data <dir>', 'data directory of the auth store (default: ./data)')
      .option('--store <url>', 'where users and tokens are kept: sqlite:FOLDER or a postgres:// URL every web app replica shares (default: auth.sqlite in --data)')
      .option('--config <file>', 'JSON config file');

  const users = program.command('users').description('users of the web app (docs/auth.md)');
  withData(users.command('add').description('add a user').argument('<name>', 'user name'))
    .option('--role <role>', 'admin, member or viewer', 'member')
    .option('--email <address>', 'where experiment e-mails go by default')
    .option('--json', 'print JSON')
    .action((name: string, flags: Record<string, unknown>) =>
      withStore(flags, async (_store, admin) => {
        const user = await admin.addUser(name, String(flags.role), flags.email === undefined ? '' : String(flags.email));
        print(Boolean(flags.json), user, () => `added ${user.name} (${user.role}), id ${user.id}`);
      }),
    );
  withData(users.command('list').description('list users'))
    .option('--json', 'print JSON')
    .action((flags: Record<string, unknown>) =>
      withStore(flags, async (store) => {
        const list = await store.listUsers();
        print(Boolean(flags.json), list, () => {
          const table = new Table({ head: ['name', 'role', 'email', 'created', 'id'] });
          for (const u of list) table.push([u.name, u.role, u.email, new Date(u.createdAt).toISOString(), u.id]);
          return table.toString();
        });
      }),
    );

  const tokens = program.command('tokens').description('API tokens (Authorization: Bearer)');
  withData(tokens.command('create').description('make a token; it is printed once, only its hash is kept'))
    .requiredOption('--user <name>', 'the user the token acts as')
    .requiredOption('--scope <scopes>', 'comma-separated: infer, read, train, models, admin, metrics')
    .option('--expires <duration>', 'lifetime, e.g. 90d, 12h (default: never)')
    .option('--json', 'print {"id","token","user","scopes","expiresAt"}')
    .action((flags: Record<string, unknown>) =>
      withStore(flags, async (_store, admin) => {
        const created = await admin.createToken(String(flags.user), String(flags.scope), flags.expires === undefined ? '' : String(flags.expires));
        print(Boolean(flags.json), created, () =>
          `${created.token}\n\ntoken ${created.id} for ${created.user}, scopes ${created.scopes.join(',')}, ` +
          `${created.expiresAt ? `expires ${created.expiresAt}` : 'does not expire'}. It is not shown again.`,
        );
      }),
    );
  withData(tokens.command('list').description('list tokens (never their secrets)'))
    .option('--json', 'print JSON')
    .action((flags: Record<string, unknown>) =>
      withStore(flags, async (_store, admin) => {
        const list = await admin.listTokens();
        print(Boolean(flags.json), list, () => {
          const table = new Table({ head: ['id', 'user', 'scopes', 'created', 'expires', 'revoked'] });
          for (const t of list) table.push([t.id, t.user, t.scopes.join(','), t.createdAt, t.expiresAt ?? '-', t.revokedAt ?? '-']);
          return table.toString();
        });
      }),
    );
  withData(tokens.command('revoke').description('revoke a token; every web app refuses it within authCacheMs').argument('<id>', 'token id'))
    .action((id: string, flags: Record<string, unknown>) =>
      withStore(flags, async (_store, admin) => {
        await admin.revokeToken(id);
        process.stdout.write(`revoked ${id}\n`);
      }),
    );

  withData(program.command('audit').description('management actions: users added, tokens made and revoked'))
    .option('--since <duration>', 'only the last DURATION, e.g. 24h, 7d')
    .option('--json', 'print JSON lines')
    .action((flags: Record<string, unknown>) =>
      withStore(flags, async (store) => {
        const since = flags.since === undefined ? 0 : Date.now() - parseDurationMs(String(flags.since));
        const entries = await store.listAudit(since);
        if (flags.json) {
          for (const e of entries) process.stdout.write(JSON.stringify({ ...e, at: new Date(e.at).toISOString() }) + '\n');
          return;
        }
        const table = new Table({ head: ['at', 'user', 'action', 'target', 'details'] });
        for (const e of entries) table.push([new Date(e.at).toISOString(), e.user, e.action, e.target, JSON.stringify(e.details)]);
        process.stdout.write(table.toString() + '\n');
      }),
    );
}
