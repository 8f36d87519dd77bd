import type { Scope } from '../shared/store/auth-store.ts';

/** `open`: no token asked, even with auth on; `any`: any valid token or session, whatever its scopes. */
export type RouteAccess = Scope | 'open' | 'any';

/**
 * The scope each operation of the OpenAPI document needs, by operationId: the one table the
 * auth gate checks and the served document's `security` is made from. A route registered
 * without an entry here fails at start, so no route is forgotten.
 */
export const ROUTE_SCOPES: Readonly<Record<string, RouteAccess>> = {
  health: 'open',
  ready: 'open',
  oipLive: 'open',
  oipReady: 'open',
  openapi: 'open',
  metrics: 'metrics',
  info: 'read',
  sample: 'read',
  oipServerMetadata: 'read',
  oipModelMetadata: 'read',
  oipModelVersionMetadata: 'read',
  oipModelReady: 'read',
  oipModelVersionReady: 'read',
  listRuns: 'read',
  getRun: 'read',
  listDatasets: 'read',
  classify: 'infer',
  oipInfer: 'infer',
  oipVersionInfer: 'infer',
  submitJob: 'train',
  jobStatus: 'train',
  jobEvents: 'train',
  cancelJob: 'train',
  addDataset: 'train',
  startTraining: 'train',
  addModel: 'models',
  removeModel: 'models',
  removeModelVersion: 'models',
  listUsers: 'admin',
  addUser: 'admin',
  listTokens: 'admin',
  createToken: 'admin',
  revokeToken: 'admin',
  listAudit: 'admin',
  getSession: 'any',
  login: 'open',
  logout: 'any',
};

/** Name of the bearer scheme in the OpenAPI document. */
export const BEARER_SCHEME = 'bearerToken';

/** The OIP routes (`/v2/...`) answer errors in the protocol's own body. */
const authError = (path: string, description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: path.startsWith('/v2') ? '#/components/schemas/OipError' : '#/components/schemas/Error' } } },
});

interface OpenApiLike {
  paths: object;
  components: object;
}

/**
 * The OpenAPI document with its security declared: a bearer scheme, and on each guarded
 * operation `security: [{ bearerToken: [scope] }]` with its 401 and 403 answers; open ones get `security: []`.
 */
export function withSecurity<T extends OpenApiLike>(document: T): T {
  const paths = Object.fromEntries(
    Object.entries(document.paths as Record<string, Record<string, { operationId: string; responses: object }>>).map(([path, item]) => [
      path,
      Object.fromEntries(
        Object.entries(item).map(([method, operation]) => {
          const access = ROUTE_SCOPES[operation.operationId];
          if (access === undefined || access === 'open') return [method, { ...operation, security: [] }];
          if (access === 'any') {
            const unauthenticated = authError(path, 'UNAUTHENTICATED: no valid token or session (auth on).');
            return [method, { ...operation, security: [{ [BEARER_SCHEME]: [] }], responses: { ...operation.responses, '401': unauthenticated } }];
          }
          return [
            method,
            {
              ...operation,
              security: [{ [BEARER_SCHEME]: [access] }],
              responses: {
                ...operation.responses,
                '401': authError(path, 'UNAUTHENTICATED: no token, or an unknown, expired or revoked one (auth on).'),
                '403': authError(path, `FORBIDDEN: the token lacks the \`${access}\` scope, or the caller does not own the item.`),
              },
            },
          ];
        }),
      ),
    ]),
  );
  const components = {
    ...document.components,
    securitySchemes: {
      [BEARER_SCHEME]: {
        type: 'http',
        scheme: 'bearer',
        description: 'An API token from `zerve tokens create` (docs/auth.md); its scopes name the route groups it opens.',
      },
    },
  };
  return { ...document, paths, components };
}
