import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { E, HookdError } from '../core/errors.js';
import { Id } from '../core/flow.js';
import type { Queue } from '../queue/contract.js';

const DeadLetterQuery = Type.Object({
  flowId: Type.Optional(Id),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
});

export async function queueRoutes(app: FastifyInstance, { queue }: { queue: Queue }): Promise<void> {
  app.get('/queue', async () => queue.stats());

  app.get<{ Querystring: Static<typeof DeadLetterQuery> }>('/dead-letters', { schema: { querystring: DeadLetterQuery } }, async (request) => {
    const limit = request.query.limit ?? 100;
    const items = await queue.deadLetters({ ...(request.query.flowId !== undefined ? { flowId: request.query.flowId } : {}), limit });
    return { items: items.map((d) => ({ ...d, enqueuedAt: new Date(d.enqueuedAt).toISOString(), deadAt: new Date(d.deadAt).toISOString() })) };
  });

  app.post<{ Params: { id: string } }>('/dead-letters/:id/retry', async (request, reply) => {
    if (!(await queue.retryDead(request.params.id))) throw new HookdError(E.NOT_FOUND, `Dead letter ${request.params.id}`);
    return reply.code(202).send({ id: request.params.id, status: 'requeued' });
  });

  // Dismissed: a dead letter nobody will retry (its flow is gone, the event is obsolete).
  app.delete<{ Params: { id: string } }>('/dead-letters/:id', async (request, reply) => {
    if (!(await queue.discardDead(request.params.id))) throw new HookdError(E.NOT_FOUND, `Dead letter ${request.params.id}`);
    return reply.code(204).send();
  });
}
