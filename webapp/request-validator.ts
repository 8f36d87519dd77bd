import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { Ajv, type ValidateFunction } from 'ajv';
import { ZerveError } from '../shared/errors.ts';
import { OPENAPI_DOCUMENT } from './openapi.ts';

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema: object;
}

interface Operation {
  operationId: string;
  parameters?: readonly Parameter[];
}

type Location = 'query' | 'path';

/** What a checked request carries, coerced to the documented types. */
export interface CheckedParameters {
  query: Record<string, unknown>;
  path: Record<string, unknown>;
}

/**
 * Checks each request's query and path parameters against the OpenAPI document with ajv, so the
 * document is the one place where the API's inputs are defined.
 */
export class RequestValidator {
  private readonly checks = new Map<string, Partial<Record<Location, ValidateFunction>>>();

  constructor(document: { paths: object } = OPENAPI_DOCUMENT) {
    const ajv = new Ajv({ coerceTypes: true, useDefaults: true, allErrors: true, strict: true });
    for (const item of Object.values(document.paths) as Record<string, Operation>[]) {
      for (const operation of Object.values(item)) {
        const checks: Partial<Record<Location, ValidateFunction>> = {};
        for (const location of ['query', 'path'] as const) {
          const parameters = (operation.parameters ?? []).filter((p) => p.in === location);
          if (parameters.length === 0) continue;
          checks[location] = ajv.compile({
            type: 'object',
            properties: Object.fromEntries(parameters.map((p) => [p.name, p.schema])),
            required: parameters.filter((p) => p.required).map((p) => p.name),
          });
        }
        this.checks.set(operation.operationId, checks);
      }
    }
  }

  /** Express middleware checking the request for `operationId`; the checked values go to `res.locals.params`. */
  middleware(operationId: string): RequestHandler {
    const checks = this.checks.get(operationId);
    if (!checks) throw new Error(`operation ${operationId} is not in the OpenAPI document`);
    return (req: Request, res: Response, next: NextFunction) => {
      const params: CheckedParameters = {
        query: this.check(checks.query, 'query', { ...(req.query as object) }),
        path: this.check(checks.path, 'path', { ...req.params }),
      };
      res.locals.params = params;
      next();
    };
  }

  private check(validate: ValidateFunction | undefined, location: Location, values: Record<string, unknown>) {
    if (validate && !validate(values)) {
      const errors = (validate.errors ?? []).map((e) => ({
        in: location,
        parameter: e.instancePath.replace(/^\//, '') || (e.params as { missingProperty?: string }).missingProperty,
        message: e.message,
      }));
      const first = errors[0];
      throw new ZerveError('BAD_REQUEST', `${location} parameter ${first?.parameter ?? ''} ${first?.message ?? 'is invalid'}`, {
        details: { errors },
      });
    }
    return values;
  }
}
