import type { ZerveClient } from '../shared/client.ts';
import { ZerveError } from '../shared/errors.ts';
import type { ServiceInfo } from '../shared/messages.ts';
import { CLASSIFY_PREFIX, MODELS_DESCRIBE, classifyService } from '../shared/protocol.ts';
import { JOBS_SUBMIT } from '../shared/jobs.ts';

/** A model as `/api/info` lists it. */
export interface ModelInfo {
  name: string;
  versions?: string[];
  latest?: string;
  input?: Record<string, unknown>;
  labels?: number;
  workers: number;
}

/** How stale a cached list may be before a lookup that missed asks the broker again. */
const MISS_REFRESH_MS = 200;

/**
 * What the cluster serves now, from the broker's `mmi.services` and the workers' `models.describe`,
 * cached for a short time so that checking a model costs no round trip per request.
 */
export class ModelCatalog {
  private services: { at: number; list: Promise<ServiceInfo[]> } | undefined;
  /** The last list the broker gave: what a model lookup falls back on while the broker is too busy to answer one. */
  private lastServices: ServiceInfo[] | undefined;
  private models: { at: number; list: Promise<ModelInfo[]> } | undefined;

  constructor(
    private readonly client: ZerveClient,
    private readonly options: { infoCacheMs: number; probeTimeoutMs: number },
  ) {}

  /** Live services, cached for `maxAgeMs` (0: asked anew each time, never served from a list of the same millisecond). */
  serviceList(maxAgeMs = this.options.infoCacheMs): Promise<ServiceInfo[]> {
    if (!this.services || Date.now() - this.services.at >= maxAgeMs) {
      const list = this.client.services({ timeoutMs: this.options.probeTimeoutMs, retries: 0 });
      this.services = { at: Date.now(), list };
      list.then(
        (services) => {
          this.lastServices = services;
        },
        () => {
          if (this.services?.list === list) this.services = undefined; // never cache a failure
        },
      );
    }
    return this.services.list;
  }

  /** Whether a worker offers `service` now. */
  async offers(service: string): Promise<boolean> {
    const find = (list: ServiceInfo[]) => list.find((s) => s.name === service && s.workers > 0);
    return find(await this.serviceList()) !== undefined || find(await this.serviceList(MISS_REFRESH_MS)) !== undefined;
  }

  /**
   * Checks that some worker has served `model`.
   * @throws ZerveError UNKNOWN_MODEL when other models are served but not this one; NO_WORKERS when none is;
   *   the lookup's error (TIMEOUT) when the broker does not answer and did not list the model before
   */
  async requireModel(model: string): Promise<void> {
    const service = classifyService(model);
    let list: ServiceInfo[];
    try {
      list = await this.serviceList();
      if (!list.some((s) => s.name === service)) list = await this.serviceList(MISS_REFRESH_MS);
    } catch (err) {
      // A broker swamped by queued requests may answer mmi.services late: a model it served a moment ago
      // goes on to the queue (answered, or refused OVERLOADED there) instead of failing on the lookup.
      if (this.lastServices?.some((s) => s.name === service)) return;
      throw err;
    }
    if (list.some((s) => s.name === service)) return;
    if (!list.some((s) => s.name.startsWith(CLASSIFY_PREFIX) && s.workers > 0)) {
      throw new ZerveError('NO_WORKERS', 'no inference worker is serving any model now');
    }
    throw new ZerveError('UNKNOWN_MODEL', `no model named ${JSON.stringify(model)} is served`);
  }

  /** Whether the jobs service is up. */
  jobsAvailable(): Promise<boolean> {
    return this.offers(JOBS_SUBMIT);
  }

  /** Models served now, described by their workers where one answers `models.describe`. */
  modelList(): Promise<ModelInfo[]> {
    if (!this.models || Date.now() - this.models.at >= this.options.infoCacheMs) {
      const list = this.describe();
      this.models = { at: Date.now(), list };
      list.catch(() => {
        if (this.models?.list === list) this.models = undefined;
      });
    }
    return this.models.list;
  }

  private async describe(): Promise<ModelInfo[]> {
    const services = await this.serviceList();
    const served = services.filter((s) => s.name.startsWith(CLASSIFY_PREFIX));
    const described = new Map<string, Omit<ModelInfo, 'workers'>>();
    if (services.some((s) => s.name === MODELS_DESCRIBE && s.workers > 0)) {
      try {
        const reply = await this.client.requestJson<{ models?: Omit<ModelInfo, 'workers'>[] }>(
          MODELS_DESCRIBE,
          [Buffer.from('{}')],
          { timeoutMs: this.options.probeTimeoutMs, retries: 0 },
        );
        for (const model of reply.models ?? []) described.set(model.name, model);
      } catch {
        // a worker that cannot describe its models still serves them: list them by name
      }
    }
    return served
      .map((s) => {
        const name = s.name.slice(CLASSIFY_PREFIX.length);
        return { ...described.get(name), name, workers: s.workers };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  }
}
