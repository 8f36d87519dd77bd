/**
 * `POST /api/models`: a model uploaded on the page goes to the cluster as `zerve models add` does,
 * with the same options and an optional labels file. The web app holds the new version (ModelHolder
 * over a temporary folder, connected like a worker to `connect`, else `broker`) until an inference
 * worker has fetched it, then lets go; nothing stays on its disk.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RequestHandler } from 'express';
import type express from 'express';
import { DEFAULT_MODEL_SYNC_OPTIONS, type WebAppOptions } from '../shared/config.ts';
import { curveOptionsOf } from '../shared/curve-socket-options.ts';
import { ZerveError } from '../shared/errors.ts';
import { ModelHolder } from '../workers/model-exchange/model-holder.ts';
import type { AddModelVersionOptions } from '../workers/model-exchange/model-writer.ts';
import { readFileUpload, type UploadKind } from './read-upload.ts';
import type { CheckedParameters } from './request-validator.ts';
import type { AuditTrail } from './audit-trail.ts';

/** Multipart field of the optional labels file (one label per line, line N = class N). */
export const LABELS_FIELD = 'labels';

export const MODEL_UPLOAD: UploadKind = {
  field: 'model',
  rawTypes: ['application/octet-stream'],
  hint: 'send multipart/form-data with the field "model" (and optionally "labels"), or the ONNX bytes with content type application/octet-stream',
  tooLarge: 'PAYLOAD_TOO_LARGE',
  extraFields: [LABELS_FIELD],
};

/** The query options of `POST /api/models`: `zerve models add`'s flags, checked by the OpenAPI document. */
type ModelQuery = { name: string } & Pick<AddModelVersionOptions, 'logits'> & { channels?: string; size?: string; range?: string; mean?: string; std?: string };
const STRING_OPTIONS = ['channels', 'size', 'range', 'mean', 'std'] as const;

export interface ModelRoutesContext {
  options: WebAppOptions;
  withSlot: (work: () => Promise<void>) => Promise<void>;
  audit: AuditTrail;
}

export class ModelRoutes {
  constructor(private readonly context: ModelRoutesContext) {}

  register(app: express.Express, check: (operationId: string) => RequestHandler): void {
    app.post('/api/models', check('addModel'), this.addModel);
  }

  private readonly addModel: RequestHandler = async (req, res) => {
    const query = (res.locals as { params: CheckedParameters }).params.query as ModelQuery;
    const { options } = this.context;
    await this.context.withSlot(async () => {
      const upload = await readFileUpload(req, options.maxModelBytes, MODEL_UPLOAD);
      if (!upload.bytes || upload.bytes.length === 0) throw new ZerveError('BAD_REQUEST', `no model file: ${MODEL_UPLOAD.hint}`);
      const labels = upload.extra?.[LABELS_FIELD];
      if (labels?.length === 0) throw new ZerveError('BAD_REQUEST', 'the labels file is empty');
      const folder = await mkdtemp(join(tmpdir(), 'zerve-web-model-'));
      let holder: ModelHolder | undefined;
      try {
        await mkdir(join(folder, 'models'));
        holder = new ModelHolder({
          ...DEFAULT_MODEL_SYNC_OPTIONS,
          ...curveOptionsOf(options),
          heartbeatIntervalMs: options.heartbeatIntervalMs,
          heartbeatLiveness: options.heartbeatLiveness,
          // Under CURVE the broker takes workers on its worker socket only: `connect` names it.
          connect: options.connect || options.broker,
          broker: options.broker,
          models: join(folder, 'models'),
          kind: 'models-add',
        });
        const version: Omit<AddModelVersionOptions, 'models'> = { name: query.name, file: join(folder, 'model.onnx') };
        await writeFile(version.file, upload.bytes);
        if (labels) await writeFile((version.labels = join(folder, 'labels.txt')), labels);
        for (const key of STRING_OPTIONS) if (query[key] !== undefined) version[key] = query[key];
        if (query.logits) version.logits = true;
        await holder.start();
        const published = await holder.publish(version);
        await holder.handoff(published, options.modelHandoffTimeoutMs);
        await this.context.audit.record(res, 'model.add', `${published.name}@${published.version}`, { sha256: published.hash });
        res.status(201).json({ name: published.name, version: published.version, sha256: published.hash });
      } finally {
        await holder?.close();
        await rm(folder, { recursive: true, force: true });
      }
    });
  };
}
