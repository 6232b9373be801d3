import type { FastifyInstance, RouteOptions } from 'fastify';
import type { TSchema } from 'typebox';

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
  /**
   * Status codes it answers with, and when; a JSON answer with its schema (response-schemas.ts).
   * Errors have hookd's shape (components.schemas.Error).
   */
  responses: Record<number, string | { description: string; schema: TSchema }>;
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
export function openApi(app: FastifyInstance, info: { version: string }): { document(): object } {
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

function build(operations: readonly Operation[], info: { version: string }): object {
  const paths: Record<string, Record<string, object>> = {};
  const components: Record<string, object> = { Error: ERROR };
  for (const op of operations) {
    // The route's whole URL, its plugin's prefix (/api) included.
    const path = op.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const params = [...op.url.matchAll(/:([A-Za-z]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    const query = op.query ? queryParameters(op.query) : [];
    const doc = op.doc;
    (paths[path] ??= {})[op.method] = {
      summary: doc?.summary ?? '',
      security: [{ bearer: [] }],
      ...(params.length + query.length > 0 ? { parameters: [...params, ...query] } : {}),
      ...(doc?.body ? { requestBody: { required: doc.bodyOptional !== true, content: { 'application/json': { schema: plain(doc.body) } } } } : {}),
      responses: responses(doc?.responses ?? {}, op.method, doc?.body !== undefined, components, params.length > 0),
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
      schemas: components,
    },
    paths,
  };
}

/** What the route says, and what every route of the API can answer besides. */
function responses(byStatus: RouteDoc['responses'], method: string, takesBody: boolean, components: Record<string, object>, takesParams: boolean): Record<string, object> {
  const all: RouteDoc['responses'] = {
    ...byStatus,
    401: 'No token, or not a valid one',
    503: 'Storage or queue unavailable: retry after Retry-After',
  };
  if (method !== 'get') all[403] ??= 'A read token: it may only read';
  // fastify's maxParamLength.
  if (takesParams) all[414] ??= 'A path parameter longer than 256 characters';
  if (takesBody) {
    all[413] ??= 'Body over 1 MiB';
    all[415] ??= 'Body not JSON';
  }
  const out: Record<string, object> = {};
  for (const [status, doc] of Object.entries(all)) {
    if (typeof doc !== 'string') {
      out[status] = { description: doc.description, content: { 'application/json': { schema: hoisted(plain(doc.schema), components) } } };
    } else if (Number(status) >= 400) {
      out[status] = { description: doc, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    } else {
      out[status] = { description: doc };
    }
  }
  return out;
}

/**
 * A schema with every part that has an `$id` (response-schemas.ts: Flow, Execution, …) moved to
 * components.schemas under that name and referenced from where it was: one definition per type,
 * which is what client generators name their classes after.
 */
function hoisted(schema: unknown, components: Record<string, object>): unknown {
  if (Array.isArray(schema)) return schema.map((s) => hoisted(s, components));
  if (schema === null || typeof schema !== 'object') return schema;
  const { $id, ...rest } = schema as Record<string, unknown>;
  const inner = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, hoisted(v, components)]));
  if (typeof $id !== 'string') return inner;
  components[$id] ??= inner;
  return { $ref: `#/components/schemas/${$id}` };
}

function queryParameters(schema: TSchema): object[] {
  const s = plain(schema) as { properties?: Record<string, object>; required?: string[] };
  return Object.entries(s.properties ?? {}).map(([name, prop]) => ({ name, in: 'query', required: s.required?.includes(name) === true, schema: prop }));
}

/** A TypeBox schema as plain JSON Schema (its symbols dropped). */
function plain(schema: TSchema): object {
  return JSON.parse(JSON.stringify(schema)) as object;
}

/**
 * The webhook URLs and the operations routes: not under /api, no token. Written here by hand (the
 * ingress registers them without docs): keep in step with ingress/hook-routes.ts.
 */
function outsideApi(): Record<string, Record<string, object>> {
  const open = { security: [] };
  const flowId = { name: 'flowId', in: 'path', required: true, schema: { type: 'string' } };
  const hook = (summary: string) => ({
    ...open,
    summary,
    description:
      "The flow's credentials (docs/credentials.md) as configured; any content type with a parser (docs/payloads.md). The answer, `{requestId, message: \"thank you\"}` or the flow's configured one (`trigger.response`, any 2xx), only once the request is committed. A path after the flow id (`/hook/{flowId}/a/b`) is kept as the message's path.",
    parameters: [flowId],
    responses: {
      '2XX': { description: "Committed (200, or the flow's configured answer); or a provider's subscription handshake answered" },
      400: { description: 'Malformed body, with the reason; or a malformed HTTP message (no Host, two Host lines, Transfer-Encoding with Content-Length, …)' },
      401: { description: 'Credentials missing or malformed' },
      403: { description: 'Credentials wrong, or the client address not allowed' },
      404: { description: 'No such flow, or stopped (the same answer for both)' },
      405: { description: 'A method no webhook takes (DELETE, TRACE, PROPFIND, PURGE, QUERY, …), with Allow' },
      408: { description: 'The request did not arrive whole within REQUEST_TIMEOUT' },
      411: { description: 'An HTTP/1.0 request with a Content-Type and no Content-Length' },
      413: { description: 'Body over PAYLOAD_SIZE_LIMIT (or ATTACHMENT_SIZE_LIMIT for files)' },
      415: { description: 'No parser for the Content-Type or Content-Encoding, or a body without a Content-Type' },
      417: { description: 'An Expect other than 100-continue' },
      429: { description: "Over the flow's rate limit" },
      431: { description: 'Request line and headers over 16 KiB, or 1,000 header lines or more' },
      501: { description: 'A Transfer-Encoding other than chunked' },
      503: { description: 'Storage or queue unavailable: nothing acknowledged; retry after Retry-After' },
    },
  });
  const webhook = {
    head: {
      ...open,
      summary: 'Whether the flow exists and is started; processes nothing',
      description: 'A protected flow answers 404 unless the probe carries valid credentials (an unknown flow and a flow the caller may not see look alike).',
      parameters: [flowId],
      responses: { 200: { description: 'Started' }, 404: { description: 'Unknown, stopped, or protected and no valid credentials' } },
    },
    get: hook('A message from query and headers'),
    post: hook('A message from body, query and headers'),
    put: hook('As POST'),
    patch: hook('As POST'),
    options: {
      ...open,
      summary: "CORS preflight, answered for origins and methods the flow's CORS configuration allows",
      parameters: [flowId],
      responses: { 204: { description: 'Allowed (Access-Control-Allow-* headers)' }, 404: { description: 'Not allowed, or no such flow (alike)' } },
    },
  };
  return {
    '/hook/{flowId}': webhook,
    '/healthz': { get: { ...open, summary: 'The process is alive', responses: { 200: { description: '{"status": "ok"}' } } } },
    '/readyz': { get: { ...open, summary: 'A write commits now (store and queue)', responses: { 200: { description: 'Ready' }, 503: { description: 'Not ready (reason given)' } } } },
    '/metrics': { get: { ...open, summary: 'Prometheus metrics', responses: { 200: { description: 'text/plain; version=0.0.4' } } } },
  };
}
