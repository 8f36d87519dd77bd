/**
 * `POST /api/models`: a model uploaded on the page goes to the cluster as `zerve models add` does,
 * with the same options and an optional labels file. The web app holds the new version (ModelHolder
 * over a temporary folder, connected like a worker to `connect`, else `broker`) until an inference
 * worker has fetched it, then lets go; nothing stays on its disk. The uploader owns the version. With
 * an `Idempotency-Key`, a resend of the same file answers the version the first one added.
 *
 * `DELETE /api/models/:name[/versions/:version]`: `zerve models remove`, for the owner of every
 * version removed or an admin.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RequestHandler } from 'express';
import type express from 'express';
import { DEFAULT_MODEL_SYNC_OPTIONS, type WebAppOptions } from '../shared/config.ts';
import { curveOptionsOf } from '../shared/curve-socket-options.ts';
import { ZerveError } from '../shared/errors.ts';
import { ModelHolder, type PublishOptions } from '../shared/model-exchange/model-holder.ts';
import { IDEMPOTENCY_KEY_HEADER, parseIdempotencyKey } from '../shared/idempotency-key.ts';
import type { AddModelVersionOptions } from '../shared/model-exchange/model-writer.ts';
import { readFileUpload, type UploadKind } from './read-upload.ts';
import type { CheckedParameters } from './request-validator.ts';
import type { AuditTrail } from './audit-trail.ts';
import { AuthGate } from './auth-gate.ts';
import type { OwnerCheck } from './owner-check.ts';

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
  owners: OwnerCheck;
}

/** The owned-item id of a model version (`OwnerCheck`, the audit log's target). */
const modelVersionId = (name: string, version: string) => `${name}@${version}`;

export class ModelRoutes {
  constructor(private readonly context: ModelRoutesContext) {}

  register(app: express.Express, check: (operationId: string) => RequestHandler): void {
    app.post('/api/models', check('addModel'), this.addModel);
    app.delete('/api/models/:name', check('removeModel'), this.removeModel);
    app.delete('/api/models/:name/versions/:version', check('removeModelVersion'), this.removeModel);
  }

  /** A ModelHolder over a temporary folder, connected like a worker; removed with the folder after `work`. */
  private async withHolder<T>(kind: string, work: (holder: ModelHolder, folder: string) => Promise<T>): Promise<T> {
    const { options } = this.context;
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
        kind,
      });
      await holder.start();
      return await work(holder, folder);
    } finally {
      await holder?.close();
      await rm(folder, { recursive: true, force: true });
    }
  }

  private readonly removeModel: RequestHandler = async (_req, res) => {
    const path = (res.locals as { params: CheckedParameters }).params.path as { name: string; version?: string };
    const principal = AuthGate.principalOf(res);
    await this.withHolder('models-remove', async (holder) => {
      const versions = await holder.versionsOf(path.name, path.version);
      for (const version of versions) await this.context.owners.requireOwner('model', modelVersionId(path.name, version), principal);
      await holder.retract(path.name, versions, this.context.options.modelHandoffTimeoutMs);
      for (const version of versions) await this.context.audit.record(res, 'model.remove', modelVersionId(path.name, version));
      res.json({ name: path.name, versions });
    });
  };

  private readonly addModel: RequestHandler = async (req, res) => {
    const query = (res.locals as { params: CheckedParameters }).params.query as ModelQuery;
    const key = parseIdempotencyKey(req.get(IDEMPOTENCY_KEY_HEADER));
    const { options } = this.context;
    await this.context.withSlot(async () => {
      const upload = await readFileUpload(req, options.maxModelBytes, MODEL_UPLOAD);
      if (!upload.bytes || upload.bytes.length === 0) throw new ZerveError('BAD_REQUEST', `no model file: ${MODEL_UPLOAD.hint}`);
      const labels = upload.extra?.[LABELS_FIELD];
      if (labels?.length === 0) throw new ZerveError('BAD_REQUEST', 'the labels file is empty');
      await this.withHolder('models-add', async (holder, folder) => {
        const version: PublishOptions = { name: query.name, file: join(folder, 'model.onnx'), ...(key === undefined ? {} : { key }) };
        await writeFile(version.file, upload.bytes!);
        if (labels) await writeFile((version.labels = join(folder, 'labels.txt')), labels);
        for (const key of STRING_OPTIONS) if (query[key] !== undefined) version[key] = query[key];
        if (query.logits) version.logits = true;
        const published = await holder.publish(version);
        await holder.handoff(published, options.modelHandoffTimeoutMs);
        await this.context.owners.record('model', modelVersionId(published.name, published.version), AuthGate.principalOf(res));
        await this.context.audit.record(res, 'model.add', modelVersionId(published.name, published.version), { sha256: published.hash });
        res.status(201).json({ name: published.name, version: published.version, sha256: published.hash });
      });
    });
  };
}
