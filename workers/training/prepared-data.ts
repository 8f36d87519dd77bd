import type { TrainingOptions } from '../../shared/config.ts';
import type { Logger } from '../../shared/logger.ts';
import type { TrainingRequest } from '../../shared/training-request.ts';
import type { BackboneSpec } from './backbone.ts';
import type { BackboneRepository } from './backbone-repository.ts';
import { prepareTraining, type PreparedTraining } from './trainer.ts';

const MAX_PREPARED = 2;

/**
 * Prepared data (dataset, features, splits) by what it depends on: computed once per process for a
 * whole search, whether its runs come as one `train` or as many `train.run`s.
 */
export class PreparedData {
  private readonly prepared = new Map<string, Promise<PreparedTraining>>();

  constructor(
    private readonly options: TrainingOptions,
    private readonly backboneRepository: BackboneRepository,
    private readonly log: Logger,
  ) {}

  prepare(request: TrainingRequest, signal: AbortSignal, onFeatures?: (done: number, total: number) => void): Promise<PreparedTraining> {
    const key = JSON.stringify([request.datasetId, request.family, request.pixels, request.backbone, request.split, request.seed ?? 1]);
    let prepared = this.prepared.get(key);
    if (!prepared) {
      prepared = this.backbones(request).then((backbones) => prepareTraining({ ...request, search: undefined }, {
        options: this.options,
        backbones,
        signal,
        logger: this.log,
        ...(onFeatures ? { onProgress: (e) => e.phase === 'features' && onFeatures(e.done, e.total) } : {}),
      }));
      this.prepared.set(key, prepared);
      prepared.catch(() => this.prepared.delete(key));
      while (this.prepared.size > MAX_PREPARED) this.prepared.delete(this.prepared.keys().next().value!);
    }
    // Prepared data is shared between requests; each keeps its own request (export, params, ...).
    return prepared.then((p) => ({ ...p, request }));
  }

  /** The backbone a transfer request names: the latest version of that model in the repository (squeezenet layouts). */
  private async backbones(request: TrainingRequest): Promise<Record<string, BackboneSpec>> {
    const name = request.backbone;
    if (request.family !== 'transfer' || typeof name !== 'string') return {};
    const spec = await this.backboneRepository.resolve(name);
    return spec ? { [name]: spec } : {};
  }
}
