import { ownSignatureHeader } from '../auth/schemes/hmac.js';
import type { FastifyInstance } from 'fastify';
import { E, HookdError } from '../core/errors.js';
import { ID_RE } from '../core/flow.js';
import type { AttachmentStore } from '../attachments/contract.js';
import type { Backend } from '../store/backend.js';
import type { FlowRegistry } from '../store/flow-registry.js';
import { requireApiToken, type ApiTokens } from './api-auth.js';
import { attachmentRoutes } from './attachment-routes.js';
import { executionRoutes } from './execution-routes.js';
import { flowRoutes } from './flow-routes.js';
import { jsonBodies } from './json-body.js';
import { refuseUnknownQueryParameters } from './known-query.js';
import { methodNotAllowed } from './method-not-allowed.js';
import { queueRoutes } from './queue-routes.js';
import { hookdVersion } from '../config/version.js';
import { openApi } from './openapi.js';
import { replayRoutes } from './replay-routes.js';
import { OpenApiDocument } from './response-schemas.js';

interface Deps {
  /** SHA-256 of the admin token and of the read tokens. */
  tokens: ApiTokens;
  registry: FlowRegistry;
  backend: Backend;
  /** Base of webhook URLs (a function: with LISTEN_PORT=0 the port is known only once listening). */
  publicUrl: () => string;
  /** Where requests' files and large raw bodies are (download routes). */
  attachments?: AttachmentStore;
  /** EXECUTION_DATA_LIMIT: step inputs derived from the request are truncated like recorded ones. */
  executionDataLimit: number;
  /** MAX_ATTEMPTS: jobs of replayed requests, for flows without their own retry.maxAttempts. */
  defaultMaxAttempts: number;
  /** Keys the ids of bulk replays' copies (derived from the master key: the same on every instance). */
  replayIdKey: Buffer;
}

const RESOURCES: Record<string, string> = { flows: 'Flow', executions: 'Execution', requests: 'Request', 'dead-letters': 'Dead letter' };

/** What an id in this route names, for a 404 that says what was not found ("Flow "a b" not found"). */
function resourceOf(url: string | undefined, key: string): string {
  if (key === 'attId') return 'Attachment';
  const segment = url?.split('/')[2] ?? '';
  return RESOURCES[segment] ?? 'Resource';
}

/** Flow definitions are small: a body over this is refused (413) while it streams. */
const API_BODY_LIMIT = 1024 * 1024;

/** The management REST API under /api; every route requires the admin token (GET: or a read token). */
export async function adminApi(app: FastifyInstance, deps: Deps): Promise<void> {
  app.addHook('onRequest', requireApiToken(deps.tokens));
  jsonBodies(app, API_BODY_LIMIT);
  // An id in a URL that hookd cannot have made (ids are 1-128 of A-Z a-z 0-9 . _ -) names nothing:
  // 404 before a store is asked. PostgreSQL refuses U+0000 in text with an error (a 500), and a
  // batched lookup would share that error with every read of its turn, the runner's included.
  // (PUT /flows/:id says why an id is invalid: 400, from the flow's validation.)
  app.addHook('preHandler', async (request) => {
    const params = request.params as Record<string, string | undefined> | undefined;
    if (params === undefined || request.method === 'PUT') return;
    for (const key of ['id', 'attId']) {
      const value = params[key];
      if (value !== undefined && !ID_RE.test(value)) throw new HookdError(E.NOT_FOUND, `${resourceOf(request.routeOptions.url, key)} ${JSON.stringify(value)}`);
    }
  });
  refuseUnknownQueryParameters(app);
  const wrongMethod = methodNotAllowed(app);
  // Unknown routes under /api answer 404 (405 for a known path) only to a caller with a token
  // (the hook above runs first).
  app.setNotFoundHandler((request, reply) => {
    if (wrongMethod(request, reply)) return;
    void reply.code(404).send({ error: E.NOT_FOUND.code, message: `Route ${request.method} ${request.url.split('?')[0]} not found` });
  });
  // Before the routes: it collects them as they are registered.
  const spec = openApi(app, { version: hookdVersion() });
  await app.register(flowRoutes, { registry: deps.registry, publicUrl: deps.publicUrl });
  await app.register(executionRoutes, {
    executions: deps.backend.executions,
    requests: deps.backend.requests,
    executionDataLimit: deps.executionDataLimit,
    signatureHeaderOf: (flowId) => ownSignatureHeader(deps.registry.get(flowId)?.trigger.auth),
  });
  await app.register(queueRoutes, { queue: deps.backend.queue });
  await app.register(replayRoutes, {
    requests: deps.backend.requests,
    registry: deps.registry,
    defaultMaxAttempts: deps.defaultMaxAttempts,
    replayIdKey: deps.replayIdKey,
    ...(deps.attachments ? { attachments: deps.attachments } : {}),
  });
  await app.register(attachmentRoutes, { requests: deps.backend.requests, ...(deps.attachments ? { attachments: deps.attachments } : {}) });
  app.get('/openapi.json', { config: { doc: { summary: 'This API as an OpenAPI 3.1 document', responses: { 200: { description: 'The document', schema: OpenApiDocument } } } } }, async () => spec.document());
}
