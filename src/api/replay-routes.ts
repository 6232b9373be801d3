import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { AttachmentStore } from '../attachments/contract.js';
import { E, HookdError, isHookdError } from '../core/errors.js';
import type { Flow } from '../core/flow.js';
import { uuidv7 } from '../core/ids.js';
import type { ReceivedMessage } from '../core/message.js';
import type { RequestStore } from '../store/contracts.js';
import type { FlowRegistry } from '../store/flow-registry.js';
import { Id } from '../core/flow.js';
import { bodyChecker } from './checked-body.js';
import { copyFiles, type CopiedFiles } from './copy-files.js';
import { ISO_TIME, TIME_ID_CURSOR, timeIdCursor } from './query-formats.js';

/** `{"flowId": "…"}`: through another flow; absent, through its own. */
const replayOptions = bodyChecker(Type.Object({ flowId: Type.Optional(Id) }, { additionalProperties: false }), 'replay');

const bulkReplayOptions = bodyChecker(
  Type.Object(
    {
      /** The flow whose requests are replayed (its requests stay after it is deleted). */
      flowId: Id,
      /** Received at or after this time (RFC 3339 with a zone); absent: from the oldest kept. */
      since: Type.Optional(Type.String({ pattern: ISO_TIME.source })),
      /** Received before this time; absent: now (the answer says which time it used). */
      until: Type.Optional(Type.String({ pattern: ISO_TIME.source })),
      /** Through another flow; absent, through `flowId`. */
      into: Type.Optional(Id),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
      /** The previous answer's `next`: go on after the last request it replayed. */
      after: Type.Optional(Type.String({ pattern: TIME_ID_CURSOR.source })),
    },
    { additionalProperties: false },
  ),
  'bulk replay',
);

/** Requests read and accepted at once by a bulk replay (accepts of one turn share a group commit). */
const BULK_REPLAY_GROUP = 32;
const DEFAULT_BULK_REPLAY_LIMIT = 100;

/** The header a replayed copy carries: the id of the request it copies (steps can tell a replay). */
export const REPLAY_OF_HEADER = 'x-hookd-replay-of';

interface Deps {
  requests: RequestStore;
  registry: FlowRegistry;
  defaultMaxAttempts: number;
  /** Where requests' files are: a replayed copy gets copies of them. */
  attachments?: AttachmentStore;
}

/**
 * POST /api/requests/{id}/replay — run a stored request through its flow again (after fixing the
 * flow, or a receiver that was down), or through another flow (`{"flowId": …}`). The replay is a
 * new request: a copy with its own id and time of receipt, the same method, path, query, headers
 * (plus `x-hookd-replay-of: <id>`) and exact body bytes, accepted like a webhook (committed with
 * its job in one transaction; distributed: confirmed by the broker) and run by the flow as it is
 * defined now, with an execution of its own. The original and its execution stay as they are.
 * Files in the attachment store are copied (copy-files.ts): the copy's are its own. Credentials
 * are not checked again: the original was verified when it arrived.
 */
export async function replayRoutes(app: FastifyInstance, deps: Deps): Promise<void> {
  const targetFlow = async (id: string, field: string): Promise<Flow> => {
    const flow = await deps.registry.fetch(id);
    if (flow === undefined) {
      throw new HookdError(E.CONFLICT, `Flow ${id} does not exist: create it again, or replay into another flow ({"${field}": "…"})`);
    }
    return flow;
  };
  /** Accept a copy; its copied files are removed unless it was stored (or may have been: a 503 the sweep settles). */
  const accept = async (copy: ReceivedMessage, flow: Flow, files: CopiedFiles) => {
    let keep = false;
    try {
      const outcome = await deps.requests.accept(copy, {
        maxAttempts: flow.retry?.maxAttempts ?? deps.defaultMaxAttempts,
        includeRequest: flow.jobMessage?.includeRequest === true,
      });
      keep = outcome.kind === 'stored';
      return outcome;
    } catch (err) {
      keep = isHookdError(err) && err.statusCode === 503 && err.nothingStored !== true;
      throw err;
    } finally {
      if (!keep && files.ids.length > 0) await deps.attachments?.delete(files.ids).catch(() => undefined);
    }
  };

  app.post<{ Params: { id: string } }>('/requests/:id/replay', async (request, reply) => {
    const options = replayOptions(request.body);
    const original = await deps.requests.get(request.params.id);
    if (original === undefined) throw new HookdError(E.NOT_FOUND, `Request ${request.params.id}`);
    const flow = await targetFlow(options.flowId ?? original.flowId, 'flowId');
    const files = await copyFiles(deps.attachments, original);
    const copy = { ...copyOf(original, flow.id, uuidv7()), ...files.fields };
    await accept(copy, flow, files);
    return reply.code(202).send({ requestId: copy.id, replayOf: original.id, flowId: flow.id, status: flow.status });
  });

  /**
   * POST /api/requests/replay — a flow's requests received in [since, until), oldest first, up to
   * `limit`, each replayed as above; `next` (while the page was full) goes on with the following
   * ones. Copies get ids derived from the original, the target flow and `until`: a call repeated
   * (after a 503 midway, a timeout) replays nothing twice — those already stored count as
   * `alreadyReplayed`. The copies are received now, after `until`: never replayed again by the
   * same run of calls.
   */
  app.post('/requests/replay', async (request, reply) => {
    const body = bulkReplayOptions(request.body);
    const time = (field: 'since' | 'until'): number | undefined => {
      const text = body[field];
      if (text === undefined) return undefined;
      const ms = Date.parse(text);
      if (Number.isNaN(ms)) throw new HookdError(E.VALIDATION_FAILED, `Invalid bulk replay: /${field}: not a time: ${text}`);
      return ms;
    };
    const since = time('since');
    if (body.after !== undefined && body.until === undefined) {
      // Without it, `until` would be a new "now", and the copies the earlier calls made would be replayed too.
      throw new HookdError(E.VALIDATION_FAILED, 'Invalid bulk replay: /until: `after` goes on with a replay: pass the `until` its first answer gave');
    }
    const until = time('until') ?? Date.now();
    if (since !== undefined && since >= until) throw new HookdError(E.VALIDATION_FAILED, 'Invalid bulk replay: /since: not before `until`');
    const cursor = body.after === undefined ? null : TIME_ID_CURSOR.exec(body.after);
    const flow = await targetFlow(body.into ?? body.flowId, 'into');
    const limit = body.limit ?? DEFAULT_BULK_REPLAY_LIMIT;
    const rows = await deps.requests.listReceived({
      flowId: body.flowId,
      until,
      limit,
      ...(since !== undefined ? { since } : {}),
      ...(cursor ? { after: { receivedAt: Number(cursor[1]), id: cursor[2]! } } : {}),
    });

    const replayed: Array<{ requestId: string; replayOf: string }> = [];
    const skipped: Array<{ requestId: string; reason: string }> = [];
    let alreadyReplayed = 0;
    for (let i = 0; i < rows.length; i += BULK_REPLAY_GROUP) {
      const group = rows.slice(i, i + BULK_REPLAY_GROUP);
      const originals = await Promise.all(group.map((r) => deps.requests.get(r.id)));
      const copies: ReceivedMessage[] = [];
      const copied: string[] = [];
      const files: CopiedFiles[] = [];
      for (const [k, original] of originals.entries()) {
        const requestId = group[k]!.id;
        if (original === undefined) {
          skipped.push({ requestId, reason: 'deleted meanwhile (retention)' });
          continue;
        }
        // A copy this run made (a flow replayed into itself, `until` in the future): not again.
        if (original.id === bulkCopyId(String(original.headers[REPLAY_OF_HEADER]), flow.id, until)) continue;
        let own: CopiedFiles;
        try {
          own = await copyFiles(deps.attachments, original);
        } catch (err) {
          // A file gone or changed is this request's problem, not the call's (a 503 is the call's).
          if (!(isHookdError(err) && err.statusCode === 409)) {
            for (const f of files) await deps.attachments?.delete(f.ids).catch(() => undefined);
            throw err;
          }
          skipped.push({ requestId, reason: err.message });
          continue;
        }
        copies.push({ ...copyOf(original, flow.id, bulkCopyId(original.id, flow.id, until)), ...own.fields });
        copied.push(original.id);
        files.push(own);
      }
      // In order, so that the copies' jobs are queued in the order the originals arrived. A failure
      // (503) fails the call: repeated, it stores only what is missing.
      const outcomes = await Promise.all(copies.map((c, k) => accept(c, flow, files[k]!)));
      outcomes.forEach((o, k) => {
        const copy = copies[k]!;
        if (o.kind === 'duplicate') alreadyReplayed++;
        else replayed.push({ requestId: copy.id, replayOf: copied[k]! });
      });
    }
    const last = rows[rows.length - 1];
    return reply.code(202).send({
      flowId: flow.id,
      status: flow.status,
      until: new Date(until).toISOString(),
      replayed: replayed.length,
      alreadyReplayed,
      requests: replayed,
      skipped,
      ...(rows.length === limit && last !== undefined ? { next: timeIdCursor(last.receivedAt, last.id) } : {}),
    });
  });
}

/** The copy a replay accepts: received now, marked with the original's id. */
function copyOf(original: ReceivedMessage, flowId: string, id: string): ReceivedMessage {
  return {
    ...original,
    id,
    flowId,
    receivedAt: performance.timeOrigin + performance.now(),
    headers: { ...original.headers, [REPLAY_OF_HEADER]: original.id },
  };
}

/** The same original replayed into the same flow by calls with the same `until`: the same id. */
function bulkCopyId(originalId: string, flowId: string, until: number): string {
  return `rp-${createHash('sha256').update(`${flowId}\n${until}\n${originalId}`).digest('base64url').slice(0, 32)}`;
}
