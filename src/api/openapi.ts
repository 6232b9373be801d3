import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, RouteOptions } from 'fastify';
import type { TSchema } from 'typebox';
import { FlowInput } from '../core/flow.js';

/**
 * What a route of the management API says about itself (route `config.doc`): the OpenAPI document
 * (GET /api/openapi.json) is built from the routes as registered, so a route cannot be missing
 * from it, and the schemas that check bodies and queries are the ones it shows.
 */
export interface RouteDoc {
  summary: string;
  /** The JSON body it takes, when it takes one. */
  body?: TSchema;
  /** The body is optional (an empty one has a meaning). */
  bodyOptional?: boolean;
  /** Status codes it answers with, and when (errors have hookd's shape: components.schemas.Error). */
  responses: Record<number, string>;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    doc?: RouteDoc;
  }
}

interface Operation {
  method: string;
  url: string;
  doc: RouteDoc | undefined;
  query: TSchema | undefined;
}

const ERROR = {
  type: 'object',
  required: ['error', 'message'],
  properties: {
    error: { type: 'string', description: 'A code of the registry (src/core/errors.ts), e.g. VALIDATION_FAILED, NOT_FOUND, STORE_UNAVAILABLE' },
    message: { type: 'string' },
    details: { description: 'Validation problems, one per path' },
  },
};

/**
 * Collects the routes a plugin registers after it (an onRoute hook) and serves them as an OpenAPI
 * 3.1 document, together with the webhook and operations routes outside /api.
 */
export function openApi(app: FastifyInstance, info: { version: string; prefix: string }): { document(): object } {
  const operations: Operation[] = [];
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const query = (route.schema as { querystring?: TSchema } | undefined)?.querystring;
    for (const method of methods) {
      if (method === 'HEAD' || method === 'OPTIONS') continue;
      operations.push({ method: method.toLowerCase(), url: route.url, doc: route.config?.doc, query });
    }
  });
  let built: object | undefined;
  return {
    document() {
      built ??= build(operations, info);
      return built;
    },
  };
}

function build(operations: readonly Operation[], info: { version: string; prefix: string }): object {
  const paths: Record<string, Record<string, object>> = {};
  for (const op of operations) {
    const full = op.url.startsWith(info.prefix) ? op.url : `${info.prefix}${op.url}`;
    const path = full.replace(/:([A-Za-z]+)/g, '{$1}');
    const params = [...full.matchAll(/:([A-Za-z]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    const query = op.query ? queryParameters(op.query) : [];
    const doc = op.doc;
    (paths[path] ??= {})[op.method] = {
      summary: doc?.summary ?? '',
      security: [{ bearer: [] }],
      ...(params.length + query.length > 0 ? { parameters: [...params, ...query] } : {}),
      ...(doc?.body ? { requestBody: { required: doc.bodyOptional !== true, content: { 'application/json': { schema: plain(doc.body) } } } } : {}),
      responses: responses(doc?.responses ?? {}),
    };
  }
  Object.assign(paths, outsideApi());
  return {
    openapi: '3.1.0',
    info: {
      title: 'hookd',
      version: info.version,
      description: 'Webhook gateway and flow runtime: receive webhooks at /hook/{flowId}, commit them, run flows. The management API is under /api (docs/api.md).',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'HOOKD_ADMIN_TOKEN; a read token (HOOKD_READ_TOKENS) for GET' } },
      schemas: { Error: ERROR, FlowInput: plain(FlowInput) },
    },
    paths,
  };
}

function responses(byStatus: Record<number, string>): Record<string, object> {
  const out: Record<string, object> = {};
  for (const [status, description] of Object.entries(byStatus)) {
    out[status] = Number(status) >= 400 ? { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } } : { description };
  }
  out['401'] ??= { description: 'No token, or not a valid one', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
  return out;
}

function queryParameters(schema: TSchema): object[] {
  const s = plain(schema) as { properties?: Record<string, object>; required?: string[] };
  return Object.entries(s.properties ?? {}).map(([name, prop]) => ({ name, in: 'query', required: s.required?.includes(name) === true, schema: prop }));
}

/** A TypeBox schema as plain JSON Schema (its symbols dropped). */
function plain(schema: TSchema): object {
  return JSON.parse(JSON.stringify(schema)) as object;
}

/** The webhook URLs and the operations routes: not under /api, no token. */
function outsideApi(): Record<string, Record<string, object>> {
  const open = { security: [] };
  const hook = (summary: string) => ({
    ...open,
    summary,
    description:
      'The flow\'s credentials (docs/credentials.md) as configured; any content type with a parser (docs/payloads.md). 200 `{requestId, message: "thank you"}` (or the flow\'s configured answer) only once the request is committed. A path after the flow id (`/hook/{flowId}/a/b`) is kept as the message\'s path.',
    parameters: [{ name: 'flowId', in: 'path', required: true, schema: { type: 'string' } }],
    responses: {
      200: { description: 'Committed (or the flow\'s configured 2xx answer; a provider\'s handshake answered)' },
      400: { description: 'Malformed body, with the reason' },
      401: { description: 'Credentials missing' },
      403: { description: 'Credentials wrong, or the client address not allowed' },
      404: { description: 'No such flow, or stopped (the same answer for both)' },
      413: { description: 'Body over PAYLOAD_SIZE_LIMIT (or ATTACHMENT_SIZE_LIMIT for files)' },
      415: { description: 'No parser for the Content-Type, or a body without one' },
      429: { description: "Over the flow's rate limit" },
      503: { description: 'Storage or queue unavailable: nothing acknowledged; retry after Retry-After' },
    },
  });
  const webhook = {
    head: { ...open, summary: 'Whether the flow exists and is started (200), else 404; processes nothing', parameters: hook('').parameters, responses: { 200: { description: 'Started' }, 404: { description: 'Unknown or stopped' } } },
    get: hook('A message from query and headers'),
    post: hook('A message from body, query and headers'),
    put: hook('As POST'),
    patch: hook('As POST'),
  };
  return {
    '/hook/{flowId}': webhook,
    '/healthz': { get: { ...open, summary: 'The process is alive', responses: { 200: { description: '{"status": "ok"}' } } } },
    '/readyz': { get: { ...open, summary: 'A write commits now (store and queue)', responses: { 200: { description: 'Ready' }, 503: { description: 'Not ready (reason given)' } } } },
    '/metrics': { get: { ...open, summary: 'Prometheus metrics', responses: { 200: { description: 'text/plain; version=0.0.4' } } } },
  };
}

/** hookd's version, from its package.json (found upwards from this file: sources or dist). */
export function hookdVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++, dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'hookd' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not here: one folder up
    }
  }
  return '0.0.0';
}
