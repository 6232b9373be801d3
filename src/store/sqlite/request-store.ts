import { E, HookdError } from '../../core/errors.js';
import type { ReceivedMessage } from '../../core/message.js';
import { ACCEPT_DUPLICATE, ACCEPT_STORED, type AcceptOptions, type AcceptOutcome, type PurgeResult, type ReclaimedSpace, type RequestListQuery, type ReceivedRange, type RequestStore, type JobOfRequest } from '../contracts.js';
import type { HandoffSlot, JobHandoff } from './handoff.js';
import { acceptRequestArgs, setLeaseOwner } from './accept-args.js';
import type { Reader } from './reader.js';
import { BatchedLookup } from '../batched-lookup.js';
import type { MessageCache } from '../message-cache.js';
import { requestColumns, toMessage, type RequestRow } from '../rows.js';
import type { WriterClient } from './writer/writer-client.js';


/**
 * Raw bytes cross to the writer thread as their own copy: a Buffer is often a view into a shared
 * 8 KiB pool (cloning the view would clone the pool) and the caller keeps using it. Small bodies
 * (most webhooks) go as a latin1 string — one char per byte, so exact — because a typed array in a
 * postMessage goes through the serializer's host-object path and a new ArrayBuffer on the other
 * side (`npm run bench:op-transport`: an accept op built, posted and received in 0.34–0.46 of the
 * time). Large bodies are copied once and transferred (moved, not copied again).
 */
const TRANSFER_FROM_BYTES = 64 * 1024;

export class SqliteRequestStore implements RequestStore {
  constructor(
    private readonly writer: WriterClient,
    private readonly reader: Reader,
    private readonly handoff?: JobHandoff,
    /** Committed messages kept until the runner reads them back (saves a read per execution). */
    private readonly recent?: MessageCache,
  ) {}

  async accept(m: ReceivedMessage, options: AcceptOptions): Promise<AcceptOutcome> {
    const rawBody = m.rawBody.byteLength < TRANSFER_FROM_BYTES ? m.rawBody.toString('latin1') : new Uint8Array(m.rawBody);
    const columns = requestColumns(m);
    const args = acceptRequestArgs(m, columns, rawBody, options.maxAttempts);
    let slot: HandoffSlot | undefined;
    const handoff = this.handoff;
    let result;
    try {
      result = await this.writer.call('acceptRequest', args, {
        transfer: typeof rawBody === 'string' ? undefined : [rawBody.buffer as ArrayBuffer],
        // Reserved when the batch is formed, so a slot is never held across an idle turn.
        beforeSend: handoff
          ? (a) => {
              slot = handoff.reserve(m.flowId);
              if (slot !== undefined) setLeaseOwner(a, slot.owner);
            }
          : undefined,
      });
    } catch (err) {
      slot?.cancel();
      throw err;
    }
    if (result.kind !== 'stored') {
      slot?.cancel();
      if (result.kind === 'conflict') throw new HookdError(E.REQUEST_ID_CONFLICT, m.id);
      return ACCEPT_DUPLICATE;
    }
    // Before the hand-off: the consumer reads the message as soon as it gets the job.
    this.recent?.put(m, columns.body?.length ?? 0);
    if (slot !== undefined && result.leased) {
      slot.deliver({
        id: result.jobId,
        flowId: m.flowId,
        requestId: m.id,
        attempts: 1,
        maxAttempts: options.maxAttempts,
        enqueuedAt: result.enqueuedAt,
      });
    } else {
      slot?.cancel();
      handoff?.wake();
    }
    return ACCEPT_STORED;
  }

  async get(id: string): Promise<ReceivedMessage | undefined> {
    const row = await this.lookup.get(id);
    return row === undefined ? undefined : toMessage(row);
  }

  async getForExecution(id: string, job?: JobOfRequest): Promise<ReceivedMessage | undefined> {
    return this.recent?.take(id, job) ?? this.get(id);
  }

  /** Concurrent get()s (the runner reads one request per job, a prefetch's worth at once) share one query. */
  private readonly lookup = new BatchedLookup<string, RequestRow>(async (ids) => {
    const rows = this.reader.read('SELECT * FROM requests WHERE id IN (SELECT value FROM json_each(?))', (s) => s.all(JSON.stringify(ids)) as RequestRow[]);
    return new Map(rows.map((r) => [r.id, r]));
  });

  async referencesAttachment(attachmentId: string): Promise<boolean> {
    const hit = this.reader.read('SELECT 1 FROM request_attachments WHERE attachment_id = ?', (s) => s.pluck().get(attachmentId));
    return hit !== undefined;
  }

  async purgeOlderThan(before: number, limit: number): Promise<PurgeResult> {
    const result = await this.writer.call('purgeRequests', { before, limit });
    // Every pass, whatever this one deleted: another instance may have purged what this one holds.
    this.recent?.dropReceivedBefore(before);
    return result;
  }

  async reclaimSpace(maxPages: number): Promise<ReclaimedSpace> {
    const r = await this.writer.call('reclaimSpace', { maxPages });
    return { freedBytes: r.freedPages * r.pageSize, freeBytesLeft: r.freePagesLeft * r.pageSize, incremental: r.incremental };
  }

  async list(q: RequestListQuery): Promise<ReceivedMessage[]> {
    const { where, params } = listFilter(q);
    const sql = `SELECT * FROM requests ${where} ORDER BY received_at DESC, id DESC LIMIT ?`;
    const rows = this.reader.read(sql, (s) => s.all(...params, q.limit) as RequestRow[]);
    return rows.map(toMessage);
  }

  async listSizes(q: RequestListQuery): Promise<Array<{ id: string; bytes: number }>> {
    const { where, params } = listFilter(q);
    // octet_length reads a value's size from its header; length(CAST(… AS BLOB)) read every body.
    const sql = `SELECT id, octet_length(raw_body) + coalesce(octet_length(body), 0) AS bytes FROM requests ${where}
                 ORDER BY received_at DESC, id DESC LIMIT ?`;
    return this.reader.read(sql, (s) => s.all(...params, q.limit) as Array<{ id: string; bytes: number }>);
  }

  async listReceived(r: ReceivedRange): Promise<Array<{ id: string; receivedAt: number; bytes: number }>> {
    const where = ['flow_id = ?', 'received_at < ?'];
    const params: Array<string | number> = [r.flowId, r.until];
    if (r.since !== undefined) {
      where.push('received_at >= ?');
      params.push(r.since);
    }
    if (r.after !== undefined) {
      where.push('(received_at, id) > (?, ?)');
      params.push(r.after.receivedAt, r.after.id);
    }
    // requests_flow_received (flow_id, received_at, id) serves the range and the order.
    const sql = `SELECT id, received_at AS receivedAt, octet_length(raw_body) + coalesce(octet_length(body), 0) AS bytes
                 FROM requests WHERE ${where.join(' AND ')} ORDER BY received_at, id LIMIT ?`;
    return this.reader.read(sql, (s) => s.all(...params, r.limit) as Array<{ id: string; receivedAt: number; bytes: number }>);
  }

}

/** WHERE of list() and listSizes(): the same rows in the same order. */
function listFilter(q: RequestListQuery): { where: string; params: Array<string | number> } {
  const where: string[] = [];
  const params: Array<string | number> = [];
  if (q.flowId !== undefined) {
    where.push('flow_id = ?');
    params.push(q.flowId);
  }
  if (q.before !== undefined) {
    // Keyset on (received_at, id): the page after the request `before`, whatever its id looks like.
    where.push('(received_at, id) < (SELECT received_at, id FROM requests WHERE id = ?)');
    params.push(q.before);
  }
  return { where: where.length ? `WHERE ${where.join(' AND ')}` : '', params };
}
