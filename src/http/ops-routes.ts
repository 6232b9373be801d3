import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

interface Deps {
  checkWritable(): Promise<void>;
  isShuttingDown(): boolean;
  metrics: Registry;
}

/** /healthz: the process is alive. /readyz: it can commit a write now. /metrics: Prometheus. */
export async function opsRoutes(app: FastifyInstance, deps: Deps): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    if (deps.isShuttingDown()) return reply.code(503).header('retry-after', '1').send({ status: 'shutting down' });
    try {
      await deps.checkWritable();
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
