/**
 * `POST /api/models`: a model uploaded on the page goes to the cluster as `zerve models add` does.
 * The web app holds the new version (ModelHolder over a temporary folder, connected to the broker
 * like a worker) until an inference worker has fetched it, then lets go; nothing stays on its disk.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RequestHandler } from 'express';
import type express from 'express';
import { DEFAULT_MODEL_SYNC_OPTIONS, type WebAppOptions } from '../shared/config.ts';
import { ZerveError } from '../shared/errors.ts';
import { ModelHolder } from '../workers/inference/model-holder.ts';
import { readFileUpload, type UploadKind } from './read-upload.ts';
import type { CheckedParameters } from './request-validator.ts';

export const MODEL_UPLOAD: UploadKind = {
  field: 'model',
  rawTypes: ['application/octet-stream'],
  hint: 'send multipart/form-data with the field "model", or the ONNX bytes with content type application/octet-stream',
  tooLarge: 'PAYLOAD_TOO_LARGE',
};

export interface ModelRoutesContext {
  options: WebAppOptions;
  withSlot: (work: () => Promise<void>) => Promise<void>;
}

export class ModelRoutes {
  constructor(private readonly context: ModelRoutesContext) {}

  register(app: express.Express, check: (operationId: string) => RequestHandler): void {
    app.post('/api/models', check('addModel'), this.addModel);
  }

  private readonly addModel: RequestHandler = async (req, res) => {
    const { name, channels, range, logits } = (res.locals as { params: CheckedParameters }).params.query as { name: string; channels?: string; range?: string; logits?: boolean };
    const { options } = this.context;
    await this.context.withSlot(async () => {
      const upload = await readFileUpload(req, options.maxModelBytes, MODEL_UPLOAD);
      if (!upload.bytes || upload.bytes.length === 0) throw new ZerveError('BAD_REQUEST', `no model file: ${MODEL_UPLOAD.hint}`);
      const folder = await mkdtemp(join(tmpdir(), 'zerve-web-model-'));
      const holder = new ModelHolder({ ...DEFAULT_MODEL_SYNC_OPTIONS, connect: options.broker, broker: options.broker, models: join(folder, 'models'), kind: 'models-add' });
      try {
        const file = join(folder, 'model.onnx');
        await writeFile(file, upload.bytes);
        await holder.start();
        const published = await holder.publish({ name, file, ...(channels ? { channels } : {}), ...(range ? { range } : {}), ...(logits ? { logits } : {}) });
        await holder.handoff(published, options.modelHandoffTimeoutMs);
        res.status(201).json({ name: published.name, version: published.version, sha256: published.hash });
      } finally {
        await holder.close();
        await rm(folder, { recursive: true, force: true });
      }
    });
  };
}
