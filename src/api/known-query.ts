import type { FastifyInstance, FastifyRequest } from 'fastify';
import { invalidInput } from './checked-body.js';

/**
 * Query parameters a route does not know are refused (400) rather than ignored: a misspelt filter
 * (`?flowid=`, `?requestid=`) would otherwise answer with everything, unfiltered, and look right.
 * fastify's ajv lets them through; API bodies are strict already (checked-body.ts).
 * Register before the routes: it adds the check to each route that describes its query.
 */
export function refuseUnknownQueryParameters(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const known = queryParameters(route.schema?.querystring);
    if (known === undefined) return;
    const check = async (request: FastifyRequest): Promise<void> => {
      const unknown = Object.keys(request.query as Record<string, unknown>).filter((k) => !known.has(k));
      if (unknown.length > 0) {
        throw invalidInput('request', unknown.map((k) => `/querystring/${k}: not a parameter of this route (it takes ${[...known].join(', ')})`));
      }
    };
    const own = route.preValidation;
    route.preValidation = own === undefined ? check : [check, ...(Array.isArray(own) ? own : [own])];
  });
}

function queryParameters(schema: unknown): Set<string> | undefined {
  const properties = (schema as { properties?: Record<string, unknown> } | undefined)?.properties;
  return properties === undefined ? undefined : new Set(Object.keys(properties));
}
