import { E, isHookdError } from '../core/errors.js';
import type { Flow } from '../core/flow.js';
import type { RequestStore } from '../store/contracts.js';
import { REPLAY_OF_HEADER } from '../core/message.js';
import { isReplay, type PreparedCopy, type Replayer } from './replayer.js';

export interface BulkReplaySelection {
  /** The flow whose requests are replayed. */
  flowId: string;
  since?: number;
  until: number;
  after?: { receivedAt: number; id: string };
  limit: number;
  /** Copies made by earlier replays are taken too (default: left out, counted). */
  includeReplays: boolean;
}

export interface BulkReplayResult {
  replayed: Array<{ requestId: string; replayOf: string }>;
  alreadyReplayed: number;
  /** Copies of earlier replays in the window, left out (includeReplays takes them). */
  leftOutReplays: number;
  /** Requests not replayed, with the registry code of why (NOT_FOUND, ATTACHMENT_GONE, ATTACHMENT_CHANGED, REQUEST_ID_CONFLICT). */
  skipped: Array<{ requestId: string; code: string; reason: string }>;
  /** The last request looked at, when the page was full: the next call goes on after it. */
  last?: { receivedAt: number; id: string };
}

/**
 * Bodies read into memory at once (raw and parsed, as the store counts them), and requests per
 * group: the copies of a group are accepted together (one group commit); PostgreSQL's group commit
 * takes 4 MiB per batch and refuses past 256 MiB waiting, and GET /api/requests pages by the same
 * 16 MiB. A request larger than the budget goes alone.
 */
const GROUP_BYTES = 16 * 1024 * 1024;
const GROUP_REQUESTS = 32;

/**
 * One page of a bulk replay (POST /api/requests/replay): the flow's requests received in
 * [since, until) after `after`, oldest first, each replayed into `target` under bulkCopyId — so a
 * page repeated (after a 503 midway, a timeout) stores only the copies still missing. The copies
 * of one group are accepted in order, so their jobs are queued in the order the originals came.
 */
export async function bulkReplay(requests: RequestStore, replayer: Replayer, target: Flow, s: BulkReplaySelection): Promise<BulkReplayResult> {
  const rows = await requests.listReceived({
    flowId: s.flowId,
    until: s.until,
    limit: s.limit,
    ...(s.since !== undefined ? { since: s.since } : {}),
    ...(s.after !== undefined ? { after: s.after } : {}),
  });
  const result: BulkReplayResult = { replayed: [], alreadyReplayed: 0, leftOutReplays: 0, skipped: [] };
  for (let i = 0; i < rows.length; ) {
    let bytes = 0;
    let end = i;
    while (end < rows.length && end - i < GROUP_REQUESTS && (end === i || bytes + rows[end]!.bytes <= GROUP_BYTES)) bytes += rows[end++]!.bytes;
    const group = rows.slice(i, end);
    i = end;
    const originals = await Promise.all(group.map((r) => requests.get(r.id)));
    // Files are copied one request at a time, then the group's copies accepted in order.
    const prepared: PreparedCopy[] = [];
    try {
      for (const [k, original] of originals.entries()) {
        const requestId = group[k]!.id;
        if (original === undefined) {
          result.skipped.push({ requestId, code: E.NOT_FOUND.code, reason: 'deleted meanwhile (retention)' });
          continue;
        }
        // A copy made by a replay — by this run too, when a flow is replayed into itself with `until` ahead.
        if (isReplay(original) && (!s.includeReplays || original.id === replayer.bulkCopyId(String(original.headers[REPLAY_OF_HEADER]), target.id, s.until))) {
          result.leftOutReplays++;
          continue;
        }
        const id = replayer.bulkCopyId(original.id, target.id, s.until);
        // Stored by an earlier call of this run: its files are not copied again (only to be removed).
        if (original.attachments !== undefined || original.rawAttachment !== undefined) {
          const stored = await requests.get(id);
          if (stored !== undefined && stored.flowId === target.id && stored.headers[REPLAY_OF_HEADER] === original.id) {
            result.alreadyReplayed++;
            continue;
          }
          if (stored !== undefined) {
            result.skipped.push({ requestId, code: E.REQUEST_ID_CONFLICT.code, reason: `its copy's id ${id} is another request's` });
            continue;
          }
        }
        try {
          prepared.push(await replayer.prepare(original, target, id));
        } catch (err) {
          // A file gone or changed is this request's problem, not the call's (a 503 is the call's).
          if (!(isHookdError(err) && (err.code === E.ATTACHMENT_GONE.code || err.code === E.ATTACHMENT_CHANGED.code))) throw err;
          result.skipped.push({ requestId, code: err.code, reason: err.message });
        }
      }
    } catch (err) {
      await Promise.all(prepared.map((p) => replayer.discard(p)));
      throw err;
    }
    const outcomes = await Promise.allSettled(prepared.map((p) => replayer.accept(p)));
    for (const [k, o] of outcomes.entries()) {
      const { message, replayOf } = prepared[k]!;
      if (o.status === 'rejected') {
        // The copy's id is another flow's request (the flow got the id from somewhere): that copy only.
        if (isHookdError(o.reason) && o.reason.code === E.REQUEST_ID_CONFLICT.code) {
          result.skipped.push({ requestId: replayOf, code: o.reason.code, reason: o.reason.message });
          continue;
        }
        throw o.reason; // a 503: the call fails; repeated, it stores only what is missing
      }
      if (o.value.kind === 'duplicate') result.alreadyReplayed++;
      else result.replayed.push({ requestId: message.id, replayOf });
    }
  }
  const last = rows[rows.length - 1];
  if (rows.length === s.limit && last !== undefined) result.last = { receivedAt: last.receivedAt, id: last.id };
  return result;
}
