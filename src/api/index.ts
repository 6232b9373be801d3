import type { FastifyInstance } from 'fastify';
import type { AttachmentStore } from '../attachments/contract.js';
import type { Backend } from '../store/backend.js';
import type { FlowRegistry } from '../store/flow-registry.js';
import { requireApiToken, type ApiTokens } from './api-auth.js';
import { attachmentRoutes } from './attachment-routes.js';
import { executionRoutes } from './execution-routes.js';
import { flowRoutes } from './flow-routes.js';
import { queueRoutes } from './queue-routes.js';

interface Deps {
  /** SHA-256 of the admin token and of the read tokens. */
  tokens: ApiTokens;
  registry: FlowRegistry;
  backend: Backend;
  publicUrl: string;
  /** Where requests' files and large raw bodies are (download routes). */
  attachments?: AttachmentStore;
  /** EXECUTION_DATA_LIMIT: step inputs derived from the request are truncated like recorded ones. */
  executionDataLimit: number;
}

/** The management REST API under /api; every route requires the admin token (GET: or a read token). */
export async function adminApi(app: FastifyInstance, deps: Deps): Promise<void> {
  app.addHook('onRequest', requireApiToken(deps.tokens));
  await app.register(flowRoutes, { registry: deps.registry, publicUrl: deps.publicUrl });
  await app.register(executionRoutes, { executions: deps.backend.executions, requests: deps.backend.requests, executionDataLimit: deps.executionDataLimit });
  await app.register(queueRoutes, { queue: deps.backend.queue });
  await app.register(attachmentRoutes, { requests: deps.backend.requests, ...(deps.attachments ? { attachments: deps.attachments } : {}) });
}
