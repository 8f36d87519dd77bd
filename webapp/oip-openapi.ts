/**
 * The `/v2` routes (Open Inference Protocol, KServe v2 REST, with Triton's binary data and
 * classification extensions) of the web app's OpenAPI document, and the infer request schema the
 * routes check bodies against.
 */
import { ERROR_CODES } from '../shared/errors.ts';
import { MAX_INFER_BATCH } from '../shared/infer-messages.ts';
import { MODEL_NAME_RULE } from '../shared/model-name.ts';


const modelParameter = {
  name: 'model',
  in: 'path',
  required: true,
  description: 'Model name, as `/api/info` lists it.',
  schema: { type: 'string', pattern: MODEL_NAME_RULE },
};
const versionParameter = {
  name: 'version',
  in: 'path',
  required: true,
  description: 'Model version; without `/versions/{version}` the latest serves.',
  schema: { type: 'string', pattern: MODEL_NAME_RULE },
};
const headerLengthParameter = {
  name: 'Inference-Header-Content-Length',
  in: 'header',
  required: false,
  description: 'Binary data extension: the body starts with this many bytes of JSON; the binary data of the inputs follows.',
  schema: { type: 'integer', minimum: 1 },
};

const json = (ref: string) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } });
const error = (description: string) => ({ description, content: json('OipError') });
const retryAfter = { 'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer' } } };
const unavailable = { ...error('NO_WORKERS or OVERLOADED: retry after `Retry-After` seconds.'), headers: retryAfter };

/** A request's input tensor: JSON `data`, or `parameters.binary_data_size` bytes of the binary section. */
const REQUEST_INPUT = {
  type: 'object',
  required: ['name', 'shape', 'datatype'],
  properties: {
    name: { type: 'string', description: "The model's input name." },
    shape: { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 },
    datatype: {
      type: 'string',
      description:
        "`FP32` or `FP16` (the model's input datatype): a ready tensor in the model's input shape, batch N first. " +
        '`BYTES`, shape `[N]` or `[N,1]`: N encoded images (JPEG, PNG, ...), preprocessed as `/api/classify` does.',
    },
    parameters: {
      type: 'object',
      properties: {
        binary_data_size: { type: 'integer', minimum: 0, description: 'Bytes of this input in the binary section.' },
        content_type: { type: 'string', enum: ['base64'], description: '`base64`: the BYTES strings of `data` are base64.' },
      },
    },
    data: { description: 'JSON data: numbers (flat or nested) for FP32/FP16; strings for BYTES.' },
  },
};

const REQUEST_OUTPUT = {
  type: 'object',
  required: ['name'],
  properties: {
    name: { type: 'string' },
    parameters: {
      type: 'object',
      properties: {
        binary_data: { type: 'boolean', description: 'Answer this output in the binary section.' },
        classification: {
          type: 'integer',
          minimum: 1,
          description: 'Answer the top K classes of each row as BYTES `"score:index:label"` instead of the tensor (K past the class count: every class).',
        },
      },
    },
  },
};

/** Body (the JSON part) of `POST /v2/models/{model}/infer`; the routes check it with this schema. */
export const INFER_REQUEST_SCHEMA = {
  type: 'object',
  required: ['inputs'],
  properties: {
    id: { type: 'string' },
    parameters: {
      type: 'object',
      properties: { binary_data_output: { type: 'boolean', description: 'Answer every output in the binary section.' } },
    },
    inputs: { type: 'array', minItems: 1, maxItems: 1, items: REQUEST_INPUT },
    outputs: { type: 'array', maxItems: 1, items: REQUEST_OUTPUT },
  },
} as const;

const TENSOR_METADATA = {
  type: 'object',
  required: ['name', 'datatype', 'shape'],
  properties: {
    name: { type: 'string' },
    datatype: { type: 'string', enum: ['FP32', 'FP16'] },
    shape: { type: 'array', items: { type: 'integer', minimum: -1 }, description: 'A dynamic dimension is -1.' },
  },
};

export const OIP_SCHEMAS = {
  OipError: {
    type: 'object',
    required: ['error'],
    properties: {
      error: { type: 'string', description: 'What went wrong (the protocol\'s error body).' },
      code: { type: 'string', enum: Object.keys(ERROR_CODES), description: 'The stable Zerve error code.' },
    },
  },
  OipLive: { type: 'object', required: ['live'], properties: { live: { type: 'boolean' } } },
  OipReady: {
    type: 'object',
    required: ['ready'],
    properties: { ready: { type: 'boolean' }, error: { type: 'string' }, code: { type: 'string' } },
  },
  OipServerMetadata: {
    type: 'object',
    required: ['name', 'version', 'extensions'],
    properties: { name: { type: 'string' }, version: { type: 'string' }, extensions: { type: 'array', items: { type: 'string' } } },
  },
  OipModelMetadata: {
    type: 'object',
    required: ['name', 'versions', 'platform', 'inputs', 'outputs'],
    properties: {
      name: { type: 'string' },
      versions: { type: 'array', items: { type: 'string' } },
      platform: { type: 'string', enum: ['onnxruntime_onnx'] },
      inputs: { type: 'array', items: TENSOR_METADATA },
      outputs: { type: 'array', items: TENSOR_METADATA },
    },
  },
  OipModelReady: {
    type: 'object',
    required: ['name', 'ready'],
    properties: { name: { type: 'string' }, version: { type: 'string' }, ready: { type: 'boolean' } },
  },
  OipInferenceRequest: INFER_REQUEST_SCHEMA,
  OipInferenceResponse: {
    type: 'object',
    required: ['model_name', 'outputs'],
    properties: {
      model_name: { type: 'string' },
      model_version: { type: 'string' },
      id: { type: 'string' },
      outputs: {
        type: 'array',
        items: {
          type: 'object',
          required: ['name', 'datatype', 'shape'],
          properties: {
            name: { type: 'string' },
            datatype: { type: 'string', enum: ['FP32', 'FP16', 'BYTES'] },
            shape: { type: 'array', items: { type: 'integer', minimum: 0 } },
            parameters: { type: 'object', properties: { binary_data_size: { type: 'integer', minimum: 0 } } },
            data: { type: 'array', description: 'Numbers, or strings `"score:index:label"` for a classification.' },
          },
        },
      },
    },
  },
};

const metadataOperation = (operationId: string, parameters: object[]) => ({
  get: {
    operationId,
    summary: "The model's name, versions, platform and input and output tensors, as the ONNX file states them.",
    parameters,
    responses: {
      '200': { description: 'Model metadata.', content: json('OipModelMetadata') },
      '404': error('UNKNOWN_MODEL: no such model or version.'),
      '503': unavailable,
      '504': error('TIMEOUT.'),
    },
  },
});

const readyOperation = (operationId: string, parameters: object[]) => ({
  get: {
    operationId,
    summary: 'Ready when a worker serves the model (and the version, which it loads if needed).',
    parameters,
    responses: {
      '200': { description: 'Ready.', content: json('OipModelReady') },
      '404': error('UNKNOWN_MODEL: no such model or version.'),
      '503': unavailable,
      '504': error('TIMEOUT.'),
    },
  },
});

const inferOperation = (operationId: string, parameters: object[]) => ({
  post: {
    operationId,
    summary:
      'Inference on encoded images (BYTES) or a ready FP32/FP16 tensor, one row per image or batch entry; ' +
      'outputs as JSON `data`, in the binary section (`binary_data`, `binary_data_output`), or as classes ' +
      `(\`classification: K\`). At most ${MAX_INFER_BATCH} rows.`,
    parameters: [...parameters, headerLengthParameter],
    requestBody: {
      required: true,
      description:
        'The JSON request, or with `Inference-Header-Content-Length` the JSON followed by the binary data of each input ' +
        '(`parameters.binary_data_size` bytes each; a BYTES element is a 4-byte little-endian length and its bytes). ' +
        'Over the upload limit: 413.',
      content: {
        'application/json': { schema: { $ref: '#/components/schemas/OipInferenceRequest' } },
        'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
      },
    },
    responses: {
      '200': {
        description:
          'The outputs; with binary outputs the body is the JSON (`Inference-Header-Content-Length` bytes) and then their data.',
        headers: { 'Inference-Header-Content-Length': { description: 'Bytes of JSON before the binary data.', schema: { type: 'integer' } } },
        content: {
          'application/json': { schema: { $ref: '#/components/schemas/OipInferenceResponse' } },
          'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
        },
      },
      '400': error('BAD_REQUEST (malformed JSON, wrong datatype, wrong shape, binary sizes that do not match the body) or BAD_IMAGE.'),
      '404': error('UNKNOWN_MODEL: no such model or version.'),
      '413': error('PAYLOAD_TOO_LARGE: the body is over the upload limit.'),
      '502': error('WORKER_LOST: the worker died with the request, and no other could take it.'),
      '503': unavailable,
      '504': error('TIMEOUT.'),
    },
  },
});

const MODEL = [modelParameter];
const VERSION = [modelParameter, versionParameter];

export const OIP_PATHS = {
  '/v2/health/live': {
    get: {
      operationId: 'oipLive',
      summary: 'The web app is up.',
      responses: { '200': { description: 'Live.', content: json('OipLive') } },
    },
  },
  '/v2/health/ready': {
    get: {
      operationId: 'oipReady',
      summary: 'Ready when the broker answers and a worker serves a model.',
      responses: {
        '200': { description: 'Ready.', content: json('OipReady') },
        '503': { description: 'Not ready.', headers: retryAfter, content: json('OipReady') },
      },
    },
  },
  '/v2': {
    get: {
      operationId: 'oipServerMetadata',
      summary: 'Server name, version and the protocol extensions it speaks.',
      responses: { '200': { description: 'Server metadata.', content: json('OipServerMetadata') } },
    },
  },
  '/v2/models/{model}': metadataOperation('oipModelMetadata', MODEL),
  '/v2/models/{model}/versions/{version}': metadataOperation('oipModelVersionMetadata', VERSION),
  '/v2/models/{model}/ready': readyOperation('oipModelReady', MODEL),
  '/v2/models/{model}/versions/{version}/ready': readyOperation('oipModelVersionReady', VERSION),
  '/v2/models/{model}/infer': inferOperation('oipInfer', MODEL),
  '/v2/models/{model}/versions/{version}/infer': inferOperation('oipVersionInfer', VERSION),
};
