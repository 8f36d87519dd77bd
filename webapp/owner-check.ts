import type { Principal } from '../shared/access-policy.ts';
import { ZerveError } from '../shared/errors.ts';
import type { AuthStore, OwnedKind } from '../shared/store/auth-store.ts';

/**
 * Who may see and change which item: the maker of a dataset or job, and admins, see it (and others
 * too once it is shared); only its maker or an admin cancels it. With auth off (no store) everything
 * is everyone's, as before.
 */
export class OwnerCheck {
  constructor(private readonly store: AuthStore | undefined) {}

  /** Whether owners are recorded and checked (auth is on). */
  get enabled(): boolean {
    return this.store !== undefined;
  }

  /**
   * Whether `principal` may read an experiment (or its runs): its `request.owner`, recorded by the
   * training worker in its run store, is theirs, or they are an admin.
   */
  ownsExperiment(experiment: { request: unknown }, principal: Principal): boolean {
    if (!this.store || principal.role === 'admin') return true;
    const owner = (experiment.request as { owner?: unknown } | null)?.owner;
    return owner === principal.userId;
  }

  /** Records `principal` as an owner of the item it just made; `shared` lets every user read it. */
  async record(kind: OwnedKind, id: string, principal: Principal, shared = false): Promise<void> {
    await this.store?.addOwner({ kind, id, ownerId: principal.userId, shared });
  }

  async mayRead(kind: OwnedKind, id: string, principal: Principal): Promise<boolean> {
    if (!this.store || principal.role === 'admin') return true;
    return (await this.store.ownersOf(kind, id)).some((o) => o.ownerId === principal.userId || o.shared);
  }

  /** FORBIDDEN unless `principal` may read the item. */
  async requireRead(kind: OwnedKind, id: string, principal: Principal): Promise<void> {
    if (!(await this.mayRead(kind, id, principal))) throw forbidden(kind, id, principal);
  }

  /** FORBIDDEN unless `principal` owns the item or is an admin (shared is not enough). */
  async requireOwner(kind: OwnedKind, id: string, principal: Principal): Promise<void> {
    if (!this.store || principal.role === 'admin') return;
    if (!(await this.store.ownersOf(kind, id)).some((o) => o.ownerId === principal.userId)) throw forbidden(kind, id, principal);
  }

  /** The items `principal` may read, in their order. */
  async visible<T>(kind: OwnedKind, items: T[], idOf: (item: T) => string, principal: Principal): Promise<T[]> {
    if (!this.store || principal.role === 'admin') return items;
    const allowed = await Promise.all(items.map((item) => this.mayRead(kind, idOf(item), principal)));
    return items.filter((_, i) => allowed[i]);
  }
}

function forbidden(kind: OwnedKind, id: string, principal: Principal): ZerveError {
  return new ZerveError('FORBIDDEN', `${kind} ${id} is not ${principal.userName}'s`);
}
