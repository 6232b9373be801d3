import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { E, HookdError } from '../core/errors.js';
import { Id } from '../core/flow.js';
import type { Queue } from '../queue/contract.js';
import { bodyChecker, invalidInput } from './checked-body.js';
import { IsoTimePattern, parseIsoTime, TIME_ID_CURSOR, TimeIdCursorPattern, timeIdCursor } from './query-formats.js';
import { BulkRetryView, DeadLetterPage, DeadLetterRequeued, QueueStatsView } from './response-schemas.js';

const DeadLetterQueryString = Type.Object({
  flowId: Type.Optional(Id),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  before: Type.Optional(Type.String({ pattern: TimeIdCursorPattern })),
});

const BulkRetryBody = Type.Object(
  {
    flowId: Type.Optional(Id),
    /** Only dead letters that died at or after this time (ISO 8601 with a zone). */
    since: Type.Optional(Type.String({ pattern: IsoTimePattern })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
  },
  { additionalProperties: false },
);
const bulkRetryOptions = bodyChecker(BulkRetryBody, 'bulk retry');

export async function queueRoutes(app: FastifyInstance, { queue }: { queue: Queue }): Promise<void> {
  app.get('/queue', { config: { doc: { summary: 'Jobs ready, in flight, delayed and dead', responses: { 200: { description: 'Job counts', schema: QueueStatsView } } } } }, async () => queue.stats());

  // Paged like the other lists (`next` → `before`), by a cursor that needs no row: a dead letter
  // retried or dismissed since does not end the paging.
  app.get<{ Querystring: Static<typeof DeadLetterQueryString> }>('/dead-letters', { schema: { querystring: DeadLetterQueryString }, config: { doc: { summary: 'Dead-lettered jobs with their last error, newest first', responses: { 200: { description: 'A page of dead letters', schema: DeadLetterPage }, 400: 'Invalid query' } } } }, async (request) => {
    const limit = request.query.limit ?? 100;
    const m = request.query.before === undefined ? null : TIME_ID_CURSOR.exec(request.query.before);
    const items = await queue.deadLetters({
      ...(request.query.flowId !== undefined ? { flowId: request.query.flowId } : {}),
      ...(m ? { before: { deadAt: Number(m[1]), id: m[2]! } } : {}),
      limit,
    });
    const last = items[items.length - 1];
    return {
      items: items.map((d) => ({ ...d, enqueuedAt: new Date(d.enqueuedAt).toISOString(), deadAt: new Date(d.deadAt).toISOString() })),
      ...(items.length === limit && last !== undefined ? { next: timeIdCursor(last.deadAt, last.id) } : {}),
    };
  });

  // Bulk retry, after the receiver's outage: oldest first; call again while `remaining` says more.
  app.post('/dead-letters/retry', { config: { doc: { summary: 'Retry dead letters in bulk, oldest first', body: BulkRetryBody, bodyOptional: true, responses: { 202: { description: 'Put back, and still dead', schema: BulkRetryView }, 400: 'Invalid body' } } } }, async (request, reply) => {
    const body = bulkRetryOptions(request.body);
    const since = body.since === undefined ? undefined : parseIsoTime(body.since);
    if (body.since !== undefined && since === undefined) throw invalidInput('bulk retry', [`/since: not a time: ${body.since}`]);
    const result = await queue.retryDeadLetters({
      ...(body.flowId !== undefined ? { flowId: body.flowId } : {}),
      ...(since !== undefined ? { since } : {}),
      limit: body.limit ?? 1000,
    });
    return reply.code(202).send(result);
  });

  app.post<{ Params: { id: string } }>('/dead-letters/:id/retry', { config: { doc: { summary: 'Retry a dead letter (attempts from 1 again)', responses: { 202: { description: 'Queued again', schema: DeadLetterRequeued }, 404: 'No such dead letter', 409: 'Its flow does not exist' } } } }, async (request, reply) => {
    if (!(await queue.retryDead(request.params.id))) throw new HookdError(E.NOT_FOUND, `Dead letter ${request.params.id}`);
    return reply.code(202).send({ id: request.params.id, status: 'requeued' });
  });

  // Dismissed: a dead letter nobody will retry (its flow is gone, the event is obsolete).
  app.delete<{ Params: { id: string } }>('/dead-letters/:id', { config: { doc: { summary: 'Dismiss a dead letter', responses: { 204: 'Dismissed', 404: 'No such dead letter' } } } }, async (request, reply) => {
    if (!(await queue.discardDead(request.params.id))) throw new HookdError(E.NOT_FOUND, `Dead letter ${request.params.id}`);
    return reply.code(204).send();
  });
}
