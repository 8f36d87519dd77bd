import type { Response } from 'express';
import type { Logger } from '../shared/logger.ts';
import type { AuthStore } from '../shared/store/auth-store.ts';
import { AuthGate } from './auth-gate.ts';

/**
 * Management actions done through the web app (model added, dataset added, training started, job
 * cancelled), each logged with the caller and, when auth is on, kept in the auth store's audit log
 * (`zerve audit`). The action has happened by then: a store that fails to keep it is logged, and the
 * caller still gets its answer.
 */
export class AuditTrail {
  private readonly log: Logger;

  constructor(
    private readonly store: AuthStore | undefined,
    log: Logger,
  ) {
    this.log = log.child({ component: 'audit' });
  }

  async record(res: Response, action: string, target: string, details: Record<string, unknown> = {}): Promise<void> {
    const user = AuthGate.principalOf(res).userName;
    this.log.info({ user, action, target, ...details }, 'management action');
    try {
      await this.store?.appendAudit({ user, action, target, details });
    } catch (err) {
      this.log.error({ err, user, action, target }, 'the audit log did not keep a management action');
    }
  }
}
