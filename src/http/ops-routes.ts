import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { finishesWithin } from '../core/finishes-within.js';

interface Deps {
  checkWritable(): Promise<void>;
  isShuttingDown(): boolean;
  metrics: Registry;
}

/**
 * How long /readyz waits for the write check: a connection that died silently (no RST) answers
 * nothing until a heartbeat or TCP timeout notices, and a probe should learn "not ready" sooner.
 */
export const READY_CHECK_TIMEOUT_MS = 2_000;

/** /healthz: the process is alive. /readyz: it can commit a write now. /metrics: Prometheus. */
export async function opsRoutes(app: FastifyInstance, deps: Deps): Promise<void> {
  // HEAD too: some load balancers and probes check with it.
  app.get('/healthz', { exposeHeadRoute: true }, async () => ({ status: 'ok' }));

  app.get('/readyz', { exposeHeadRoute: true }, async (_request, reply) => {
    if (deps.isShuttingDown()) return reply.code(503).header('retry-after', '1').send({ status: 'shutting down' });
    try {
      if (!(await finishesWithin(deps.checkWritable(), READY_CHECK_TIMEOUT_MS))) {
        throw new Error(`no answer from the store or queue within ${READY_CHECK_TIMEOUT_MS} ms`);
      }
      return { status: 'ready' };
    } catch (err) {
      return reply.code(503).header('retry-after', '1').send({ status: 'unavailable', reason: (err as Error).message });
    }
  });

  app.get('/metrics', async (_request, reply) => {
    reply.type(deps.metrics.contentType);
    return deps.metrics.metrics();
  });
}
