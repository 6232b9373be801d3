import type { FastifyInstance } from 'fastify';
import { E, HookdError } from '../core/errors.js';
import type { Queue } from '../queue/contract.js';

export async function queueRoutes(app: FastifyInstance, { queue }: { queue: Queue }): Promise<void> {
  app.get('/queue', async () => queue.stats());

  app.get<{ Querystring: { flowId?: string; limit?: string } }>('/dead-letters', async (request) => {
    const limit = Math.min(1000, Math.max(1, Number(request.query.limit ?? 100) || 100));
    const items = await queue.deadLetters({ ...(request.query.flowId ? { flowId: request.query.flowId } : {}), limit });
    return { items: items.map((d) => ({ ...d, enqueuedAt: new Date(d.enqueuedAt).toISOString(), deadAt: new Date(d.deadAt).toISOString() })) };
  });

  app.post<{ Params: { id: string } }>('/dead-letters/:id/retry', async (request, reply) => {
    if (!(await queue.retryDead(request.params.id))) throw new HookdError(E.NOT_FOUND, `Dead letter ${request.params.id}`);
    return reply.code(202).send({ id: request.params.id, status: 'requeued' });
  });
}
