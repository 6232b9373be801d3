import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { E, HookdError } from '../core/errors.js';
import { uuidv7 } from '../core/ids.js';
import type { ReceivedMessage } from '../core/message.js';
import type { RequestStore } from '../store/contracts.js';
import type { FlowRegistry } from '../store/flow-registry.js';
import { Id } from '../core/flow.js';
import { bodyChecker } from './checked-body.js';

/** `{"flowId": "…"}`: through another flow; absent, through its own. */
const replayOptions = bodyChecker(Type.Object({ flowId: Type.Optional(Id) }, { additionalProperties: false }), 'replay');

/** The header a replayed copy carries: the id of the request it copies (steps can tell a replay). */
export const REPLAY_OF_HEADER = 'x-hookd-replay-of';

interface Deps {
  requests: RequestStore;
  registry: FlowRegistry;
  defaultMaxAttempts: number;
}

/**
 * POST /api/requests/{id}/replay — run a stored request through its flow again (after fixing the
 * flow, or a receiver that was down), or through another flow (`{"flowId": …}`). The replay is a
 * new request: a copy with its own id and time of receipt, the same method, path, query, headers
 * (plus `x-hookd-replay-of: <id>`) and exact body bytes, accepted like a webhook (committed with
 * its job in one transaction; distributed: confirmed by the broker) and run by the flow as it is
 * defined now, with an execution of its own. The original and its execution stay as they are.
 * Credentials are not checked again: the original was verified when it arrived.
 */
export async function replayRoutes(app: FastifyInstance, deps: Deps): Promise<void> {
  app.post<{ Params: { id: string } }>('/requests/:id/replay', async (request, reply) => {
    const options = replayOptions(request.body);
    const original = await deps.requests.get(request.params.id);
    if (original === undefined) throw new HookdError(E.NOT_FOUND, `Request ${request.params.id}`);
    const target = options.flowId ?? original.flowId;
    const flow = await deps.registry.fetch(target);
    if (flow === undefined) {
      throw new HookdError(E.CONFLICT, `Flow ${target} does not exist: create it again, or replay into another flow ({"flowId": "…"})`);
    }
    // A file belongs to one request (its retention and deletion follow that request).
    if ((original.attachments?.length ?? 0) > 0 || original.rawAttachment !== undefined) {
      throw new HookdError(E.CONFLICT, `Request ${original.id} has files in the attachment store: replaying them is not supported`);
    }
    const copy: ReceivedMessage = {
      ...original,
      id: uuidv7(),
      flowId: flow.id,
      receivedAt: performance.timeOrigin + performance.now(),
      headers: { ...original.headers, [REPLAY_OF_HEADER]: original.id },
    };
    await deps.requests.accept(copy, {
      maxAttempts: flow.retry?.maxAttempts ?? deps.defaultMaxAttempts,
      includeRequest: flow.jobMessage?.includeRequest === true,
    });
    return reply.code(202).send({ requestId: copy.id, replayOf: original.id, flowId: flow.id, status: flow.status });
  });
}
