import { ZerveError } from '../errors.ts';
import type { AuditEntry, AuthStore, NewAuditEntry, NewOwnership, NewToken, NewUser, OwnedKind, Ownership, TokenRecord, User } from './auth-store.ts';

/**
 * An auth store handed out before it is open: the web app builds its gate and routes in its
 * constructor, but opening a PostgreSQL store takes a connection and migrations, so it happens in
 * `open()` (the web app's `start()`). Until then every method answers STORE_UNAVAILABLE.
 * @example
 * const store = new DeferredAuthStore(() => openAuthStore(o.store, o.data, log));
 * const gate = new AuthGate(options, store, log);
 * await store.open(); // in start()
 */
export class DeferredAuthStore implements AuthStore {
  private store: AuthStore | undefined;
  private opening: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  constructor(private readonly opener: () => Promise<AuthStore>) {}

  /** Opens the store once; a failure (BAD_CONFIG, STORE_UNAVAILABLE) is the caller's start-up error. */
  open(): Promise<void> {
    this.opening ??= (async () => {
      const store = await this.opener();
      if (this.closing) await store.close(); // closed while it was opening: nothing keeps it
      else this.store = store;
    })();
    return this.opening;
  }

  private get opened(): AuthStore {
    if (!this.store) throw new ZerveError('STORE_UNAVAILABLE', this.closing ? 'the auth store is closed' : 'the auth store is not open yet');
    return this.store;
  }

  async addUser(user: NewUser): Promise<User> {
    return this.opened.addUser(user);
  }

  async userByName(name: string): Promise<User | undefined> {
    return this.opened.userByName(name);
  }

  async userById(id: string): Promise<User | undefined> {
    return this.opened.userById(id);
  }

  async listUsers(): Promise<User[]> {
    return this.opened.listUsers();
  }

  async createToken(token: NewToken): Promise<TokenRecord> {
    return this.opened.createToken(token);
  }

  async tokenById(id: string): Promise<TokenRecord | undefined> {
    return this.opened.tokenById(id);
  }

  async listTokens(userId?: string): Promise<TokenRecord[]> {
    return this.opened.listTokens(userId);
  }

  async revokeToken(id: string, at?: number): Promise<boolean> {
    return this.opened.revokeToken(id, at);
  }

  async addOwner(ownership: NewOwnership): Promise<void> {
    return this.opened.addOwner(ownership);
  }

  async ownersOf(kind: OwnedKind, id: string): Promise<Ownership[]> {
    return this.opened.ownersOf(kind, id);
  }

  async appendAudit(entry: NewAuditEntry): Promise<AuditEntry> {
    return this.opened.appendAudit(entry);
  }

  async listAudit(since?: number): Promise<AuditEntry[]> {
    return this.opened.listAudit(since);
  }

  /** Closes the store if it was opened (waiting for an open under way); idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.opening?.catch(() => undefined);
      const store = this.store;
      this.store = undefined;
      await store?.close();
    })();
    return this.closing;
  }
}
