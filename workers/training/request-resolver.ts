import { ZerveError } from '../../shared/errors.ts';
import { checkTrainRequest, type TrainingRequest } from '../../shared/training-request.ts';
import type { BackboneRepository } from './backbone-repository.ts';
import { MNIST_DATASET_ID } from './builtin-mnist.ts';
import type { DatasetTransfer } from './dataset-transfer.ts';
import { parseNotify, type NotifyTarget } from './notifier.ts';
import type { ExperimentStore } from '../../shared/store/experiment-store.ts';

/**
 * Turns a `train` header into what this worker trains: checked against the shared request schema,
 * the dataset name resolved to its id, the family and backbone settled, the notify target parsed.
 */
export class RequestResolver {
  constructor(
    private readonly store: ExperimentStore,
    private readonly backbones: BackboneRepository,
    private readonly transfer: DatasetTransfer,
    private readonly emailEnabled: boolean,
  ) {}

  /** A dataset id, or the name a dataset was added under. */
  async datasetId(idOrName: string): Promise<string> {
    if (idOrName === MNIST_DATASET_ID || /^[0-9a-f]{64}$/.test(idOrName)) return idOrName;
    const id = await this.store.datasetByName(idOrName);
    if (!id) throw new ZerveError('UNKNOWN_DATASET', `no dataset ${idOrName}`);
    return id;
  }

  async resolve(fields: unknown): Promise<{ request: TrainingRequest; notify?: NotifyTarget }> {
    const { notify: notifyField, ...checked } = checkTrainRequest(fields);
    const datasetId = await this.datasetId(checked.datasetId);
    const chosen = checked.family ?? (checked.backbone !== undefined ? 'transfer' : undefined);
    // Photos (any uploaded dataset) default to transfer learning when a backbone is there: an MLP
    // on 28x28 grey pixels of photos cannot do well. The built-in digits default to the MLP.
    const preferred = chosen === undefined && datasetId !== MNIST_DATASET_ID ? await this.backbones.preferred() : undefined;
    const family = chosen ?? (preferred ? 'transfer' : 'mlp');
    const backbone = checked.backbone ?? (family === 'transfer' ? (preferred ?? (await this.backbones.preferred())) : undefined);
    const request: TrainingRequest = { ...checked, family, ...(backbone !== undefined ? { backbone } : {}), datasetId };
    const notify = parseNotify(notifyField, { emailEnabled: this.emailEnabled });
    // Fails early (before any work) on a dataset neither here nor offered by another worker (mmi.service).
    if (!(await this.transfer.available(request.datasetId))) throw new ZerveError('UNKNOWN_DATASET', `no dataset ${request.datasetId}`);
    return { request, ...(notify ? { notify } : {}) };
  }
}
