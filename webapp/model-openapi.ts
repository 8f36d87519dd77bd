/**
 * The model upload and removal part of the web app's OpenAPI document (`webapp/openapi.ts` spreads these paths
 * and schemas into `OPENAPI_DOCUMENT`).
 */
import { MODEL_NAME_RULE } from '../shared/model-name.ts';

const NUMBER_LIST = '^\\s*-?[0-9.eE+-]+(\\s*,\\s*-?[0-9.eE+-]+)*\\s*$';

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

/** A version folder's name (shared/model-exchange/model-repository.ts `VERSION_NAME_PATTERN`). */
const VERSION_RULE = '^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$';

const modelNameParameter = { name: 'name', in: 'path', required: true, description: 'Model name.', schema: { type: 'string', pattern: MODEL_NAME_RULE } } as const;

const removeResponses = {
  '200': { description: 'Removed: no worker holds or serves it any more.', content: { 'application/json': { schema: { $ref: '#/components/schemas/RemovedModel' } } } },
  '400': errorResponse('BAD_REQUEST: a name or version that no model can have.'),
  '404': errorResponse('UNKNOWN_MODEL: the cluster has no such model or version (or it was removed already).'),
  '502': errorResponse("NOT_ADMITTED: the broker refused the web app's CURVE key, so it cannot offer the removal."),
  '503': errorResponse('NO_WORKERS: some worker still held or served the version after `modelHandoffTimeoutMs` (one that does not sync models).'),
} as const;

export const MODEL_PATHS = {
  '/api/models': {
    post: {
      operationId: 'addModel',
      summary:
        'Adds an ONNX model as the next version of `name`, through the cluster: the file is checked in onnxruntime, ' +
        'numbered so every host agrees, and answered once an inference worker has fetched it (every other one follows). ' +
        'Takes the options of `zerve models add`, and a labels file in the multipart field `labels`.',
      parameters: [
        { name: 'name', in: 'query', required: true, description: 'Model name, served as `classify.<name>`.', schema: { type: 'string', pattern: MODEL_NAME_RULE } },
        { name: 'channels', in: 'query', required: false, description: 'Tensor channel order (default: grey for 1-channel models, else rgb).', schema: { type: 'string', enum: ['rgb', 'bgr', 'grey'] } },
        { name: 'size', in: 'query', required: false, description: 'Input size WIDTHxHEIGHT (default: from the model; required if its shape is not fixed).', schema: { type: 'string', pattern: '^\\d{1,5}[xX]\\d{1,5}$' } },
        { name: 'range', in: 'query', required: false, description: 'What pixel values 0..255 map to (default 0-255).', schema: { type: 'string', enum: ['0-255', '0-1'] } },
        { name: 'mean', in: 'query', required: false, description: 'Per-channel mean subtracted after `range`, in tensor channel order: `a,b,c`.', schema: { type: 'string', pattern: NUMBER_LIST } },
        { name: 'std', in: 'query', required: false, description: 'Per-channel standard deviation divided by after `mean`: `a,b,c`.', schema: { type: 'string', pattern: NUMBER_LIST } },
        { name: 'logits', in: 'query', required: false, description: 'The model outputs logits (softmax is applied).', schema: { type: 'boolean' } },
      ],
      requestBody: {
        required: true,
        description:
          'The ONNX file: a multipart form with the field `model` (and optionally `labels`: one label per line, line N naming class N), ' +
          'or the raw bytes (`application/octet-stream`, no labels). A file larger than `maxModelBytes`: 413.',
        content: {
          'multipart/form-data': {
            schema: {
              type: 'object',
              properties: { model: { type: 'string', format: 'binary' }, labels: { type: 'string', format: 'binary', description: 'Labels file, one per line (as `zerve models add --labels`).' } },
              required: ['model'],
            },
          },
          'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
        },
      },
      responses: {
        '201': { description: 'Added and taken by an inference worker.', content: { 'application/json': { schema: { $ref: '#/components/schemas/AddedModel' } } } },
        '400': errorResponse('BAD_REQUEST: no file, not an ONNX model onnxruntime can load, options or a labels file (count of lines) that do not fit it.'),
        '413': errorResponse('PAYLOAD_TOO_LARGE: the upload is over `maxModelBytes`.'),
        '502': errorResponse("NOT_ADMITTED: the broker refused the web app's CURVE key (not in its `--authorized-workers`), so it cannot offer the version."),
        '503': {
          ...errorResponse('NO_WORKERS: no inference worker took the version in time (none running, or none serves this name).'),
          headers: { 'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer' } } },
        },
      },
    },
  },
  '/api/models/{name}': {
    delete: {
      operationId: 'removeModel',
      summary:
        'Removes every version of a model from the whole cluster, for good (`zerve models remove NAME`): every worker stops serving it ' +
        'once its requests in flight are answered, and it never comes back, after a restart or from another host (docs/models.md). ' +
        'Only the owner of every version (its uploader) or an admin may remove it.',
      parameters: [modelNameParameter],
      responses: removeResponses,
    },
  },
  '/api/models/{name}/versions/{version}': {
    delete: {
      operationId: 'removeModelVersion',
      summary: 'Removes one version of a model from the whole cluster, for good (`zerve models remove NAME --version V`); as `DELETE /api/models/{name}` otherwise.',
      parameters: [
        modelNameParameter,
        { name: 'version', in: 'path', required: true, description: 'The version to remove.', schema: { type: 'string', pattern: VERSION_RULE } },
      ],
      responses: removeResponses,
    },
  },
} as const;

export const MODEL_SCHEMAS = {
  RemovedModel: {
    type: 'object',
    required: ['name', 'versions'],
    properties: {
      name: { type: 'string' },
      versions: { type: 'array', items: { type: 'string' }, description: 'The versions removed.' },
    },
  },
  AddedModel: {
    type: 'object',
    required: ['name', 'version', 'sha256'],
    properties: {
      name: { type: 'string' },
      version: { type: 'string' },
      sha256: { type: 'string', description: 'Hash of the version manifest: what this number stands for on every host.' },
    },
  },
} as const;
