import { E, HookdError, unavailable } from '../../core/errors.js';
import { flowScopedRequestId } from '../../core/ids.js';
import type { ReceivedMessage } from '../../core/message.js';
import { ACCEPT_DUPLICATE, ACCEPT_STORED, type AcceptOptions, type AcceptOutcome, type PurgeResult, type RequestListQuery, type ReceivedRange, type RequestStore, type JobOfRequest, type RecordOutcome } from '../contracts.js';
import type { MessageCache } from '../message-cache.js';
import type { OutboxJob } from './outbox.js';
import { BatchedLookup } from '../batched-lookup.js';
import { AcceptBatch, MAX_BATCH_ROWS, type AcceptResult, type AcceptRow, type Dispatch } from './accept-batch.js';
import type { PgDatabase } from './database.js';
import { storeClosed } from './errors.js';
import { GroupCommit, type GroupCommitOptions } from './group-commit.js';
import { newId } from './ids.js';
import { requestColumns, toMessage, type RequestRow } from './rows.js';


export const DEFAULT_GROUP_COMMIT: GroupCommitOptions = {
  // 19 parameters a row: 512 rows (the largest statement size) stay far below the protocol's 65 535.
  maxItems: MAX_BATCH_ROWS,
  maxBytes: 4 * 1024 * 1024,
  maxInflight: 1,
  // A healthy database commits what arrives during one batch within milliseconds: this many
  // requests waiting means it hangs or cannot keep up, and further ones get a 503 at once instead
  // of holding their bodies (and their senders) until the batch before them times out.
  maxQueued: {
    items: 10_000,
    bytes: 256 * 1024 * 1024,
    overloaded: () => unavailable('store', new Error('the database is not keeping up: too many requests waiting for a commit')).beforeAnyWrite(),
  },
};

/** The statement row of a request, and the bytes it holds (for the group commit's limits). */
function acceptRow(m: ReceivedMessage, jobId: string, maxAttempts: number): { row: AcceptRow; columns: ReturnType<typeof requestColumns>; bytes: number } {
  const columns = requestColumns(m);
  const row: AcceptRow = {
    id: m.id,
    flowId: m.flowId,
    receivedAt: m.receivedAt,
    method: m.method,
    path: JSON.stringify(m.path),
    ...columns,
    // Sent as a binary parameter straight from the caller's buffer: never modified or detached.
    rawBody: m.rawBody,
    jobId,
    maxAttempts,
  };
  return { row, columns, bytes: m.rawBody.length + row.headers.length + row.query.length + (columns.body?.length ?? 0) };
}

/** Called after a batch committed `count` new jobs (queue jobs or outbox rows). */
export type CommittedListener = (count: number) => void;

/**
 * Requests on PostgreSQL. accept() goes through a group commit: the calls of one event-loop turn,
 * and those arriving while the previous batch commits, become one INSERT statement (accept-batch.ts)
 * — one transaction, one WAL flush with synchronous_commit as the server has it — and each caller
 * resolves after that COMMIT. With the default one batch in flight, batches grow with the load.
 */
export class PgRequestStore implements RequestStore {
  private closed = false;
  private readonly committer: GroupCommit<AcceptRow, AcceptResult>;
  /** recordCarried(): requests that jobs carried, written without a job, grouped as accept() groups. */
  private readonly recorder: GroupCommit<AcceptRow, AcceptResult>;
  private readonly listeners = new Set<CommittedListener>();

  constructor(
    private readonly db: PgDatabase,
    readonly dispatch: Dispatch,
    groupCommit: Partial<GroupCommitOptions> = {},
    outboxHoldMs = 0,
    /** Committed messages kept until a worker of this instance reads them back (saves a query per execution). */
    private readonly recent?: MessageCache,
  ) {
    const batch = new AcceptBatch(db, dispatch, outboxHoldMs);
    const options: GroupCommitOptions = {
      ...DEFAULT_GROUP_COMMIT,
      ...groupCommit,
      maxItems: Math.max(1, Math.min(MAX_BATCH_ROWS, groupCommit.maxItems ?? DEFAULT_GROUP_COMMIT.maxItems)),
    };
    this.committer = new GroupCommit<AcceptRow, AcceptResult>(async (rows) => {
      const outcomes = await batch.run(rows);
      let stored = 0;
      for (const o of outcomes) if (o.ok && o.value === 'stored') stored++;
      if (stored > 0) this.emit(stored);
      return outcomes;
    }, options);
    const records = new AcceptBatch(db, 'none');
    this.recorder = new GroupCommit<AcceptRow, AcceptResult>((rows) => records.run(rows), options);
  }

  /** Group commit at work: batches committed and the accepts they carried. */
  get counters(): { readonly batches: number; readonly items: number } {
    return this.committer.counters;
  }

  /** Listen for committed jobs (wakes local queue consumers or the outbox relay). Returns unsubscribe. */
  onCommitted(listener: CommittedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async accept(m: ReceivedMessage, options: AcceptOptions): Promise<AcceptOutcome> {
    return (await this.acceptWithJob(m, options)).outcome;
  }

  /** accept(), also giving the job it committed (for a caller that publishes it itself). */
  async acceptWithJob(m: ReceivedMessage, options: AcceptOptions): Promise<{ outcome: AcceptOutcome; job?: OutboxJob }> {
    if (this.closed) throw storeClosed();
    const { row, columns, bytes } = acceptRow(m, newId(), options.maxAttempts);
    const result = await this.committer.submit(row, m.id, bytes);
    if (result === 'stored') {
      this.recent?.put(m, columns.body?.length ?? 0);
      const job: OutboxJob = { id: row.jobId, flowId: m.flowId, requestId: m.id, maxAttempts: options.maxAttempts, enqueuedAt: Date.now(), claims: 0 };
      return { outcome: ACCEPT_STORED, job };
    }
    if (result === 'duplicate') return { outcome: ACCEPT_DUPLICATE };
    throw new HookdError(E.REQUEST_ID_CONFLICT, m.id);
  }

  async recordCarried(m: ReceivedMessage): Promise<RecordOutcome> {
    if (this.closed) throw storeClosed();
    const record = async (message: ReceivedMessage): Promise<AcceptResult> => {
      const { row, bytes } = acceptRow(message, '', 1);
      return this.recorder.submit(row, message.id, bytes);
    };
    let result = await record(m);
    let message = m;
    if (result === 'conflict') {
      // The sender's id is another flow's: this flow's own id for it, as the ingress does.
      message = { ...m, id: flowScopedRequestId(m.flowId, m.id) };
      result = await record(message);
    }
    if (result === 'stored') return { kind: 'recorded', message };
    if (result === 'duplicate') return { kind: 'duplicate', requestId: message.id };
    throw new HookdError(E.REQUEST_ID_CONFLICT, message.id);
  }

  async get(id: string): Promise<ReceivedMessage | undefined> {
    const row = await this.lookup.get(id);
    return row === undefined ? undefined : toMessage(row);
  }

  async getForExecution(id: string, job?: JobOfRequest): Promise<ReceivedMessage | undefined> {
    return this.recent?.take(id, job) ?? this.get(id);
  }

  /** Concurrent get()s (the runner reads one request per job) share one query. */
  private readonly lookup = new BatchedLookup<string, RequestRow>(async (ids) => {
    const { rows } = await this.db.query<RequestRow>(
      `SELECT * FROM ${this.db.t.requests} WHERE id = ANY($1::text[])`,
      [ids],
      'hookd_request_get_many',
    );
    return new Map(rows.map((r) => [r.id, r]));
  });

  async list(q: RequestListQuery): Promise<ReceivedMessage[]> {
    const { where, params } = this.listFilter(q);
    params.push(q.limit);
    const { rows } = await this.db.query<RequestRow>(
      `SELECT * FROM ${this.db.t.requests} ${where} ORDER BY received_at DESC, id DESC LIMIT $${params.length}`,
      params,
    );
    return rows.map(toMessage);
  }

  async listSizes(q: RequestListQuery): Promise<Array<{ id: string; bytes: number }>> {
    const { where, params } = this.listFilter(q);
    params.push(q.limit);
    const { rows } = await this.db.query<{ id: string; bytes: string }>(
      `SELECT id, octet_length(raw_body) + coalesce(octet_length(body), 0) AS bytes FROM ${this.db.t.requests} ${where}
       ORDER BY received_at DESC, id DESC LIMIT $${params.length}`,
      params,
    );
    return rows.map((r) => ({ id: r.id, bytes: Number(r.bytes) }));
  }

  async listReceived(r: ReceivedRange): Promise<Array<{ id: string; receivedAt: number; bytes: number }>> {
    const params: unknown[] = [r.flowId, r.until];
    const where = ['flow_id = $1', 'received_at < $2::float8'];
    if (r.since !== undefined) {
      params.push(r.since);
      where.push(`received_at >= $${params.length}::float8`);
    }
    if (r.after !== undefined) {
      params.push(r.after.receivedAt, r.after.id);
      where.push(`(received_at, id) > ($${params.length - 1}::float8, $${params.length}::text)`);
    }
    params.push(r.limit);
    const { rows } = await this.db.query<{ id: string; received_at: number; bytes: string }>(
      `SELECT id, received_at, octet_length(raw_body) + coalesce(octet_length(body), 0) AS bytes
       FROM ${this.db.t.requests} WHERE ${where.join(' AND ')} ORDER BY received_at, id LIMIT $${params.length}::integer`,
      params,
    );
    return rows.map((row) => ({ id: row.id, receivedAt: Number(row.received_at), bytes: Number(row.bytes) }));
  }

  /** WHERE of list() and listSizes(): the same rows in the same order. */
  private listFilter(q: RequestListQuery): { where: string; params: unknown[] } {
    const where: string[] = [];
    const params: unknown[] = [];
    if (q.flowId !== undefined) {
      params.push(q.flowId);
      where.push(`flow_id = $${params.length}`);
    }
    if (q.before !== undefined) {
      params.push(q.before);
      // Keyset on (received_at, id): the page after the request `before`, whatever its id looks like.
      where.push(`(received_at, id) < (SELECT received_at, id FROM ${this.db.t.requests} WHERE id = $${params.length})`);
    }
    return { where: where.length ? `WHERE ${where.join(' AND ')}` : '', params };
  }


  async referencesAttachment(attachmentId: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `SELECT 1 FROM ${this.db.t.requestAttachments} WHERE attachment_id = $1`,
      [attachmentId],
      'hookd_request_references_attachment',
    );
    return (rowCount ?? 0) > 0;
  }

  /**
   * Retention, in one statement (one transaction): take up to `limit` of the oldest requests received
   * before `before` whose work is done, delete them with their execution, step records, dead-lettered
   * job and attachment references, and return the attachment ids they referenced.
   *
   * "Work done" depends on where jobs live. 'pg-queue': no ready or leased job. 'outbox': no row
   * waiting to be published and no execution still running or retrying (the broker's queue cannot
   * be seen from here; a job that never started by the retention horizon finds its request gone).
   * Rows are locked SKIP LOCKED, so instances purging at once take different requests.
   */
  async purgeOlderThan(before: number, limit: number): Promise<PurgeResult> {
    const t = this.db.t;
    const pending =
      this.dispatch === 'pg-queue'
        ? `NOT EXISTS (SELECT 1 FROM ${t.jobs} j WHERE j.request_id = r.id AND j.state IN ('ready', 'leased'))`
        : `NOT EXISTS (SELECT 1 FROM ${t.outbox} o WHERE o.request_id = r.id)
           AND NOT EXISTS (SELECT 1 FROM ${t.executions} e WHERE e.request_id = r.id AND e.status IN ('running', 'retrying'))`;
    const { rows } = await this.db.query<{ taken: number; deleted: number; attachment_ids: string[] }>(
      `WITH victims AS (
         SELECT r.id, r.attachments, r.raw_attachment FROM ${t.requests} r
         WHERE r.received_at < $1::float8 AND ${pending}
         ORDER BY r.received_at LIMIT $2::integer
         FOR UPDATE SKIP LOCKED
       ), files AS (
         SELECT DISTINCT f.id FROM victims v CROSS JOIN LATERAL (
           SELECT a.value ->> 'id' AS id FROM json_array_elements(coalesce(v.attachments, '[]')::json) a
           UNION ALL SELECT v.raw_attachment::json ->> 'id'
         ) f WHERE f.id IS NOT NULL
       ), steps AS (
         DELETE FROM ${t.steps} WHERE execution_id IN (
           SELECT e.id FROM ${t.executions} e WHERE e.request_id IN (SELECT id FROM victims))
       ), executions AS (
         DELETE FROM ${t.executions} WHERE request_id IN (SELECT id FROM victims)
       ), dead AS (
         DELETE FROM ${t.jobs} WHERE state = 'dead' AND request_id IN (SELECT id FROM victims)
       ), refs AS (
         DELETE FROM ${t.requestAttachments} WHERE attachment_id IN (SELECT id FROM files)
       ), deleted AS (
         DELETE FROM ${t.requests} WHERE id IN (SELECT id FROM victims) RETURNING 1
       )
       SELECT (SELECT count(*) FROM victims)::integer AS taken,
              (SELECT count(*) FROM deleted)::integer AS deleted,
              ARRAY(SELECT id FROM files ORDER BY id) AS attachment_ids`,
      [before, limit],
    );
    const r = rows[0]!;
    // Every pass, whatever this one deleted: another instance may have purged what this one holds.
    this.recent?.dropReceivedBefore(before);
    return { requests: r.deleted, attachmentIds: r.attachment_ids, more: r.taken === limit };
  }

  /** Refuse new accepts (503) and wait for the batches already submitted to commit or fail. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([this.committer.drain(), this.recorder.drain()]);
  }

  private emit(count: number): void {
    for (const listener of this.listeners) {
      try {
        listener(count);
      } catch (err) {
        this.db.logger.warn({ err }, 'postgres: commit listener failed');
      }
    }
  }
}
