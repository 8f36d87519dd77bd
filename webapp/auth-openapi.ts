/**
 * The user and token management part of the web app's OpenAPI document (`webapp/openapi.ts`
 * spreads these paths and schemas into `OPENAPI_DOCUMENT`); every route needs the `admin` scope.
 */
import { ROLES, SCOPES } from '../shared/store/auth-store.ts';

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});
const jsonBody = (ref: string) => ({ required: true, content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } } });
const jsonAnswer = (description: string, schema: object) => ({ description, content: { 'application/json': { schema } } });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const NULLABLE_TIME = { type: 'string', format: 'date-time', nullable: true };

export const AUTH_PATHS = {
  '/api/users': {
    get: {
      operationId: 'listUsers',
      summary: 'The users of the auth store (as `zerve users list`).',
      responses: { '200': jsonAnswer('Users, oldest first.', { type: 'array', items: ref('User') }) },
    },
    post: {
      operationId: 'addUser',
      summary: 'Adds a user (as `zerve users add`); written to the audit log.',
      requestBody: jsonBody('NewUser'),
      responses: {
        '201': jsonAnswer('The user.', ref('User')),
        '400': errorResponse('BAD_REQUEST: a bad name or role.'),
        '409': errorResponse('ALREADY_EXISTS: a user of that name exists.'),
      },
    },
  },
  '/api/tokens': {
    get: {
      operationId: 'listTokens',
      summary: 'The API tokens, never their secrets (as `zerve tokens list`).',
      responses: { '200': jsonAnswer('Tokens, oldest first.', { type: 'array', items: ref('TokenListing') }) },
    },
    post: {
      operationId: 'createToken',
      summary: 'Makes a token (as `zerve tokens create`); the answer carries it in clear, this once. Written to the audit log.',
      requestBody: jsonBody('NewToken'),
      responses: {
        '201': jsonAnswer('The token.', ref('CreatedToken')),
        '400': errorResponse('BAD_REQUEST: an unknown scope, a scope beyond the role, a bad `expires`.'),
        '404': errorResponse('UNKNOWN_USER: no such user.'),
      },
    },
  },
  '/api/tokens/{id}': {
    delete: {
      operationId: 'revokeToken',
      summary: 'Revokes a token (as `zerve tokens revoke`): every replica refuses it within `authCacheMs`. Written to the audit log.',
      parameters: [{ name: 'id', in: 'path', required: true, description: 'Token id.', schema: { type: 'string', pattern: '^[0-9a-f]{12}$' } }],
      responses: {
        '200': jsonAnswer('Revoked.', { type: 'object', required: ['id', 'revoked'], properties: { id: { type: 'string' }, revoked: { type: 'boolean' } } }),
        '404': errorResponse('UNKNOWN_TOKEN: no such token.'),
      },
    },
  },
  '/api/session': {
    get: {
      operationId: 'getSession',
      summary: 'Who the caller is: user, role and scopes (`anonymous` with auth off); 401 when not logged in.',
      responses: { '200': jsonAnswer('The caller.', ref('Session')) },
    },
    post: {
      operationId: 'login',
      summary:
        'Logs the page in with an API token: answers a session cookie (HttpOnly, SameSite=Lax, Secure behind TLS) holding a short-lived token ' +
        'of the same user and scopes. Refused from another site (Origin, Sec-Fetch-Site).',
      requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', required: ['token'], properties: { token: { type: 'string' } } } } } },
      responses: {
        '201': jsonAnswer('Logged in; the cookie is set.', ref('Session')),
        '400': errorResponse('BAD_REQUEST: no token in the body, or auth is off.'),
        '401': errorResponse('UNAUTHENTICATED: the token is unknown, expired or revoked.'),
        '403': errorResponse('FORBIDDEN: a request from another site.'),
        '429': errorResponse('TOO_MANY_ATTEMPTS: too many failed logins from this address or for this token; see Retry-After.'),
      },
    },
    delete: {
      operationId: 'logout',
      summary: 'Logs out: revokes the session token on every replica and clears the cookie.',
      responses: { '204': { description: 'Logged out.' } },
    },
  },
  '/api/audit': {
    get: {
      operationId: 'listAudit',
      summary: 'Management actions (as `zerve audit`), oldest first.',
      parameters: [{ name: 'since', in: 'query', required: false, description: 'Only entries at or after this time (epoch milliseconds).', schema: { type: 'integer', minimum: 0 } }],
      responses: { '200': jsonAnswer('Entries.', { type: 'array', items: ref('AuditEntry') }) },
    },
  },
} as const;

export const AUTH_SCHEMAS = {
  User: {
    type: 'object',
    required: ['id', 'name', 'role', 'email', 'createdAt'],
    properties: { id: { type: 'string' }, name: { type: 'string' }, role: { type: 'string', enum: [...ROLES] }, email: { type: 'string' }, createdAt: { type: 'integer' } },
  },
  NewUser: {
    type: 'object',
    required: ['name'],
    properties: { name: { type: 'string' }, role: { type: 'string', enum: [...ROLES], default: 'member' }, email: { type: 'string' } },
  },
  NewToken: {
    type: 'object',
    required: ['user', 'scopes'],
    properties: {
      user: { type: 'string' },
      scopes: { type: 'string', description: `Comma-separated: ${SCOPES.join(', ')}.` },
      expires: { type: 'string', description: 'Lifetime: `90d`, `12h`, `30m`, `45s`, `2w`; absent: never expires.' },
    },
  },
  CreatedToken: {
    type: 'object',
    required: ['id', 'token', 'user', 'scopes', 'expiresAt'],
    properties: { id: { type: 'string' }, token: { type: 'string' }, user: { type: 'string' }, scopes: { type: 'array', items: { type: 'string', enum: [...SCOPES] } }, expiresAt: NULLABLE_TIME },
  },
  TokenListing: {
    type: 'object',
    required: ['id', 'user', 'scopes', 'createdAt', 'expiresAt', 'revokedAt'],
    properties: {
      id: { type: 'string' },
      user: { type: 'string' },
      scopes: { type: 'array', items: { type: 'string', enum: [...SCOPES] } },
      createdAt: { type: 'string', format: 'date-time' },
      expiresAt: NULLABLE_TIME,
      revokedAt: NULLABLE_TIME,
    },
  },
  Session: {
    type: 'object',
    required: ['user', 'role', 'scopes'],
    properties: {
      auth: { type: 'boolean', description: 'Whether the web app asks for credentials.' },
      insecure: { type: 'boolean', description: 'Whether it runs open on a non-loopback address (`--insecure`): the page warns.' },
      user: { type: 'string' },
      role: { type: 'string', enum: [...ROLES] },
      scopes: { type: 'array', items: { type: 'string', enum: [...SCOPES] } },
      expiresAt: { type: 'string', format: 'date-time' },
    },
  },
  AuditEntry: {
    type: 'object',
    required: ['seq', 'at', 'user', 'action', 'target', 'details'],
    properties: { seq: { type: 'integer' }, at: { type: 'integer' }, user: { type: 'string' }, action: { type: 'string' }, target: { type: 'string' }, details: { type: 'object' } },
  },
} as const;
