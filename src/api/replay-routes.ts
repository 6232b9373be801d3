import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { AttachmentStore } from '../attachments/contract.js';
import { preciseNow } from '../core/clock.js';
import { E, HookdError } from '../core/errors.js';
import { Id, type Flow } from '../core/flow.js';
import { uuidv7 } from '../core/ids.js';
import type { RequestStore } from '../store/contracts.js';
import type { FlowRegistry } from '../store/flow-registry.js';
import { bulkReplay } from './bulk-replay.js';
import { bodyChecker, invalidInput } from './checked-body.js';
import { IsoTimePattern, parseIsoTime, TIME_ID_CURSOR, TimeIdCursorPattern, timeIdCursor } from './query-formats.js';
import { Replayer } from './replayer.js';
import { BulkReplayView, ReplayAccepted } from './response-schemas.js';

/** `{"flowId": "…"}`: through another flow; absent, through its own. */
const ReplayBody = Type.Object({ flowId: Type.Optional(Id) }, { additionalProperties: false });
const replayOptions = bodyChecker(ReplayBody, 'replay');

const BulkReplayBody = Type.Object(
  {
    /** The flow whose requests are replayed (its requests stay after it is deleted). */
    flowId: Id,
    /** Received at or after this time (RFC 3339 with a zone); absent: from the oldest kept. */
    since: Type.Optional(Type.String({ pattern: IsoTimePattern })),
    /** Received before this time; absent: now (the answer says which time it used). */
    until: Type.Optional(Type.String({ pattern: IsoTimePattern })),
    /** Through another flow; absent, through `flowId`. */
    into: Type.Optional(Id),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    /** The previous answer's `next`: go on after the last request it looked at. */
    after: Type.Optional(Type.String({ pattern: TimeIdCursorPattern })),
    /** Copies made by earlier replays are replayed too (default: left out). */
    includeReplays: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
const bulkReplayOptions = bodyChecker(BulkReplayBody, 'bulk replay');

const DEFAULT_BULK_REPLAY_LIMIT = 100;

interface Deps {
  requests: RequestStore;
  registry: FlowRegistry;
  defaultMaxAttempts: number;
  /** Where requests' files are: a replayed copy gets copies of them. */
  attachments?: AttachmentStore;
  /** Keys the ids of bulk replays' copies (replayer.ts, bulkCopyId): the same on every instance. */
  replayIdKey: Buffer;
}

/**
 * Replays (replayer.ts): run stored requests through their flow again (after fixing the flow, or a
 * receiver that was down), or through another flow, as new requests with executions of their own;
 * the originals and their executions stay as they are. Credentials are not checked again: the
 * originals were verified when they arrived.
 */
export async function replayRoutes(app: FastifyInstance, deps: Deps): Promise<void> {
  const replayer = new Replayer({
    requests: deps.requests,
    replayIdKey: deps.replayIdKey,
    defaultMaxAttempts: deps.defaultMaxAttempts,
    ...(deps.attachments ? { attachments: deps.attachments } : {}),
  });
  const targetFlow = async (id: string, field: string): Promise<Flow> => {
    const flow = await deps.registry.fetch(id);
    if (flow === undefined) {
      throw new HookdError(E.CONFLICT, `Flow ${id} does not exist: create it again, or replay into another flow ({"${field}": "…"})`);
    }
    return flow;
  };

  /** POST /api/requests/{id}/replay [{"flowId"}] → 202 {requestId, replayOf, flowId, status}. */
  app.post<{ Params: { id: string } }>('/requests/:id/replay', { config: { doc: { summary: 'Replay a stored request through its flow (or another) as a new request', body: ReplayBody, bodyOptional: true, responses: { 202: { description: 'The copy, stored and queued', schema: ReplayAccepted }, 400: 'Invalid body', 404: 'No such request', 409: 'The flow does not exist, or a file of the request is gone or changed' } } } }, async (request, reply) => {
    const options = replayOptions(request.body);
    const original = await deps.requests.get(request.params.id);
    if (original === undefined) throw new HookdError(E.NOT_FOUND, `Request ${request.params.id}`);
    const flow = await targetFlow(options.flowId ?? original.flowId, 'flowId');
    const id = uuidv7();
    await replayer.replay(original, flow, id);
    return reply.code(202).send({ requestId: id, replayOf: original.id, flowId: flow.id, status: flow.status });
  });

  /**
   * POST /api/requests/replay — a page of a bulk replay (bulk-replay.ts): a flow's requests of a
   * time window, oldest first; `next` goes on with the following ones.
   */
  app.post('/requests/replay', { config: { doc: { summary: 'Bulk replay: a flow\'s requests of a time window, oldest first, a page per call', body: BulkReplayBody, responses: { 202: { description: 'This page replayed', schema: BulkReplayView }, 400: 'Invalid body', 409: 'The target flow does not exist' } } } }, async (request, reply) => {
    const body = bulkReplayOptions(request.body);
    const time = (field: 'since' | 'until'): number | undefined => {
      const text = body[field];
      if (text === undefined) return undefined;
      const ms = parseIsoTime(text);
      if (ms === undefined) throw invalidInput('bulk replay', [`/${field}: not a time: ${text}`]);
      return ms;
    };
    const since = time('since');
    if (body.after !== undefined && body.until === undefined) {
      // Without it, `until` would be a new "now": another run, whose copies' ids differ from this one's.
      throw invalidInput('bulk replay', ['/until: `after` goes on with a replay: pass the `until` its first answer gave']);
    }
    // Now on the clock of the requests' receivedAt, in whole ms (the answer gives it back exactly).
    const until = time('until') ?? Math.floor(preciseNow());
    if (since !== undefined && since >= until) throw invalidInput('bulk replay', ['/since: not before `until`']);
    const cursor = body.after === undefined ? null : TIME_ID_CURSOR.exec(body.after);
    const flow = await targetFlow(body.into ?? body.flowId, 'into');
    const result = await bulkReplay(deps.requests, replayer, flow, {
      flowId: body.flowId,
      until,
      limit: body.limit ?? DEFAULT_BULK_REPLAY_LIMIT,
      includeReplays: body.includeReplays === true,
      ...(since !== undefined ? { since } : {}),
      ...(cursor ? { after: { receivedAt: Number(cursor[1]), id: cursor[2]! } } : {}),
    });
    return reply.code(202).send({
      flowId: flow.id,
      status: flow.status,
      until: new Date(until).toISOString(),
      replayed: result.replayed.length,
      alreadyReplayed: result.alreadyReplayed,
      leftOutReplays: result.leftOutReplays,
      requests: result.replayed,
      skipped: result.skipped,
      ...(result.last ? { next: timeIdCursor(result.last.receivedAt, result.last.id) } : {}),
    });
  });
}
