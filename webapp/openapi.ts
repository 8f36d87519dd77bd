/**
 * The OpenAPI 3 document of the web app's HTTP API, served at `/api/openapi.json`. Requests are
 * checked against its parameters (see `RequestValidator`), and a test checks every route and every
 * answer against it, so the document cannot drift from the code.
 */
import { ERROR_CODES } from '../shared/errors.ts';
import { JOB_STATES } from '../shared/jobs.ts';
import { MODEL_NAME_RULE } from '../shared/model-name.ts';
import { OIP_PATHS, OIP_SCHEMAS } from './oip-openapi.ts';
import { MODEL_PATHS, MODEL_SCHEMAS } from './model-openapi.ts';
import { AUTH_PATHS, AUTH_SCHEMAS } from './auth-openapi.ts';
import { TRAINING_PATHS, TRAINING_SCHEMAS } from './training-openapi.ts';
import { withSecurity } from './route-scopes.ts';

const JOB_ID = '^[A-Za-z0-9-]{1,128}$';

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});
const retryAfter = { 'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer' } } };
const unavailable = { ...errorResponse('NO_WORKERS or OVERLOADED: retry after `Retry-After` seconds.'), headers: retryAfter };

const imageParameters = [
  {
    name: 'model',
    in: 'query',
    required: true,
    description: 'Model name, as `/api/info` lists it.',
    schema: { type: 'string', pattern: MODEL_NAME_RULE },
  },
  {
    name: 'topk',
    in: 'query',
    required: false,
    description: "How many predictions to return; defaults to the model's configuration.",
    schema: { type: 'integer', minimum: 1, maximum: 1000 },
  },
  {
    name: 'version',
    in: 'query',
    required: false,
    description: 'Model version; defaults to the latest.',
    schema: { type: 'string', pattern: MODEL_NAME_RULE },
  },
  {
    name: 'cache',
    in: 'query',
    required: false,
    description: "`false` skips the inference worker's result cache: the image is classified, and the answer not stored.",
    schema: { type: 'boolean' },
  },
  {
    name: 'sample',
    in: 'query',
    required: false,
    description: 'Classify a sample image of the gallery by name instead of an upload (send no body).',
    schema: { type: 'string', pattern: '^[^/\\\\]{1,255}$' },
  },
];

const imageBody = {
  required: false,
  description:
    'The image file as uploaded (JPEG, PNG, WebP, GIF, AVIF, TIFF): a multipart form with the field `image`, ' +
    'or the raw bytes. Omitted when `sample` is given. Larger than the upload limit: 413.',
  content: {
    'multipart/form-data': {
      schema: { type: 'object', properties: { image: { type: 'string', format: 'binary' } }, required: ['image'] },
    },
    'image/*': { schema: { type: 'string', format: 'binary' } },
    'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
  },
};

const jobIdParameter = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'The ticket id `POST /api/jobs` answered.',
  schema: { type: 'string', pattern: JOB_ID },
};

const json = (ref: string) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } });

/** With each operation's `security` from ROUTE_SCOPES (route-scopes.ts). */
export const OPENAPI_DOCUMENT = withSecurity({
  openapi: '3.0.3',
  info: {
    title: 'Zerve web API',
    version: '0.1.0',
    description:
      'Image classification over HTTP in front of the Zerve cluster (a Majordomo broker and ONNX inference ' +
      'workers), with durable job tickets, and training: datasets, trainings run as jobs, and the tracked experiments ' +
      'and runs; and the Open Inference Protocol (KServe v2) under `/v2`. Every error answers `{"error":{"code","message"}}` with a ' +
      'stable code; under `/v2` it answers `{"error":"message","code"}`, as the protocol says.',
    license: { name: 'MIT' },
  },
  paths: {
    '/healthz': {
      get: {
        operationId: 'health',
        summary: 'The process is up.',
        responses: { '200': { description: 'Up.', content: json('Health') } },
      },
    },
    '/readyz': {
      get: {
        operationId: 'ready',
        summary: 'Ready when the broker answers and at least one worker serves a model.',
        responses: {
          '200': { description: 'Ready.', content: json('Ready') },
          '503': { description: 'Not ready.', headers: retryAfter, content: json('Ready') },
        },
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        summary: "This web app's Prometheus metrics (HTTP durations by route and status, process metrics); the broker's /metrics shows the cluster.",
        responses: { '200': { description: 'Prometheus text format 0.0.4.', content: { 'text/plain': { schema: { type: 'string' } } } } },
      },
    },
    '/api/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'This document.',
        responses: { '200': { description: 'The OpenAPI document.', content: { 'application/json': { schema: { type: 'object' } } } } },
      },
    },
    '/api/info': {
      get: {
        operationId: 'info',
        summary: 'Models served now and the sample images of the gallery.',
        responses: {
          '200': { description: 'Models and samples.', content: json('Info') },
          '503': unavailable,
          '504': errorResponse('TIMEOUT: the broker did not answer.'),
        },
      },
    },
    '/api/samples/{name}': {
      get: {
        operationId: 'sample',
        summary: 'A sample image of the gallery.',
        parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: '^[^/\\\\]{1,255}$' } }],
        responses: {
          '200': { description: 'The image file.', content: { 'image/*': { schema: { type: 'string', format: 'binary' } } } },
          '404': errorResponse('NOT_FOUND: no such sample.'),
        },
      },
    },
    '/api/classify': {
      post: {
        operationId: 'classify',
        summary: 'Classifies an image and answers the same JSON as the ZeroMQ reply.',
        parameters: imageParameters,
        requestBody: imageBody,
        responses: {
          '200': { description: 'Top predictions and timings.', content: json('ClassifyReply') },
          '400': errorResponse('BAD_REQUEST or BAD_IMAGE.'),
          '404': errorResponse('UNKNOWN_MODEL: no such model or version.'),
          '413': errorResponse('IMAGE_TOO_LARGE.'),
          '503': unavailable,
          '504': errorResponse('TIMEOUT.'),
        },
      },
    },
    '/api/jobs': {
      post: {
        operationId: 'submitJob',
        summary: 'Classifies an image as a durable job: answers a ticket at once.',
        parameters: imageParameters,
        requestBody: imageBody,
        responses: {
          '202': {
            description: 'Accepted: the job is stored and will run; poll `url` or follow `eventsUrl`.',
            headers: { Location: { description: 'The job URL.', schema: { type: 'string' } } },
            content: json('JobTicket'),
          },
          '400': errorResponse('BAD_REQUEST or BAD_IMAGE.'),
          '404': errorResponse('UNKNOWN_MODEL.'),
          '413': errorResponse('IMAGE_TOO_LARGE.'),
          '503': unavailable,
          '504': errorResponse('TIMEOUT.'),
        },
      },
    },
    '/api/jobs/{id}': {
      get: {
        operationId: 'jobStatus',
        summary: 'State, progress and result or error of a job.',
        parameters: [jobIdParameter],
        responses: {
          '200': { description: 'The job.', content: json('JobStatus') },
          '404': errorResponse('UNKNOWN_JOB: no such job, or its result expired.'),
          '503': unavailable,
          '504': errorResponse('TIMEOUT.'),
        },
      },
      delete: {
        operationId: 'cancelJob',
        summary: 'Cancels a queued or running job; a finished job is left as it is.',
        parameters: [jobIdParameter],
        responses: {
          '200': { description: 'The job after the cancel.', content: json('JobStatus') },
          '404': errorResponse('UNKNOWN_JOB.'),
          '503': unavailable,
          '504': errorResponse('TIMEOUT.'),
        },
      },
    },
    '/api/jobs/{id}/events': {
      get: {
        operationId: 'jobEvents',
        summary:
          'Server-Sent Events: `state` ({state}) on each change, `progress` ({seq, at, data}, with `id: seq`) per ' +
          'PARTIAL reply, then `done` (the JobStatus) and the stream ends. Send `Last-Event-ID` to resume.',
        parameters: [jobIdParameter],
        responses: {
          '200': { description: 'The event stream.', content: { 'text/event-stream': { schema: { type: 'string' } } } },
          '404': errorResponse('UNKNOWN_JOB.'),
          '503': unavailable,
        },
      },
    },
    ...TRAINING_PATHS,
    ...OIP_PATHS,
    ...MODEL_PATHS,
    ...AUTH_PATHS,
  },
  components: {
    schemas: {
      ...TRAINING_SCHEMAS,
      ...OIP_SCHEMAS,
      ...MODEL_SCHEMAS,
      ...AUTH_SCHEMAS,
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: {
              code: { type: 'string', enum: Object.keys(ERROR_CODES) },
              message: { type: 'string' },
              details: { type: 'object' },
            },
          },
        },
      },
      Health: { type: 'object', required: ['status'], properties: { status: { type: 'string', enum: ['ok'] } } },
      Ready: {
        type: 'object',
        required: ['ready'],
        properties: {
          ready: { type: 'boolean' },
          models: { type: 'array', items: { type: 'string' } },
          jobs: { type: 'boolean', description: 'Whether the jobs service is up.' },
          error: { $ref: '#/components/schemas/Error/properties/error' },
        },
      },
      Prediction: {
        type: 'object',
        required: ['index', 'label', 'probability'],
        properties: {
          index: { type: 'integer', minimum: 0 },
          label: { type: 'string' },
          probability: { type: 'number', minimum: 0, maximum: 1 },
        },
      },
      ClassifyReply: {
        type: 'object',
        required: ['model', 'version', 'predictions', 'timings'],
        properties: {
          model: { type: 'string' },
          version: { type: 'string' },
          predictions: { type: 'array', items: { $ref: '#/components/schemas/Prediction' } },
          cached: { type: 'boolean', enum: [true], description: "Present when the answer came from the worker's result cache, without inference." },
          timings: {
            type: 'object',
            description: 'Milliseconds per stage (decodeMs, inferenceMs, hashMs, totalMs; a cached answer has only hashMs and totalMs); the web app adds httpMs.',
            additionalProperties: { type: 'number' },
          },
        },
      },
      Model: {
        type: 'object',
        required: ['name', 'workers'],
        properties: {
          name: { type: 'string' },
          versions: { type: 'array', items: { type: 'string' } },
          latest: { type: 'string' },
          input: { type: 'object', description: "The model's input: size, channels, layout, ..." },
          labels: { type: 'integer', description: 'Number of classes.' },
          workers: { type: 'integer', description: 'Workers serving the model now.' },
        },
      },
      Sample: {
        type: 'object',
        required: ['name', 'url', 'bytes'],
        properties: { name: { type: 'string' }, url: { type: 'string' }, bytes: { type: 'integer' } },
      },
      Info: {
        type: 'object',
        required: ['models', 'samples', 'maxUploadBytes', 'jobs'],
        properties: {
          models: { type: 'array', items: { $ref: '#/components/schemas/Model' } },
          samples: { type: 'array', items: { $ref: '#/components/schemas/Sample' } },
          maxUploadBytes: { type: 'integer' },
          jobs: { type: 'boolean', description: 'Whether the jobs service is up.' },
        },
      },
      JobTicket: {
        type: 'object',
        required: ['id', 'state', 'url', 'eventsUrl'],
        properties: {
          id: { type: 'string' },
          state: { type: 'string', enum: [...JOB_STATES] },
          url: { type: 'string' },
          eventsUrl: { type: 'string' },
        },
      },
      JobStatus: {
        type: 'object',
        required: ['id', 'service', 'state', 'attempts', 'createdAt', 'progress', 'progressSeq'],
        properties: {
          id: { type: 'string' },
          service: { type: 'string' },
          state: { type: 'string', enum: [...JOB_STATES] },
          attempts: { type: 'integer', minimum: 0 },
          createdAt: { type: 'string', format: 'date-time' },
          startedAt: { type: 'string', format: 'date-time', nullable: true },
          finishedAt: { type: 'string', format: 'date-time', nullable: true },
          expiresAt: { type: 'string', format: 'date-time', nullable: true },
          progress: {
            type: 'array',
            items: {
              type: 'object',
              required: ['seq', 'at', 'data'],
              properties: { seq: { type: 'integer' }, at: { type: 'string', format: 'date-time' }, data: {} },
            },
          },
          progressSeq: { type: 'integer', minimum: 0 },
          result: { description: "The target's reply: a ClassifyReply for classification jobs." },
          failure: {
            description: 'Why the job failed or was canceled (`code` is an error code).',
            $ref: '#/components/schemas/Error/properties/error',
          },
        },
      },
    },
  },
} as const);
