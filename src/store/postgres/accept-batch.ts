import { batchOrEach } from './batch-or-each.js';
import { NOW_MS, type PgDatabase } from './database.js';
import type { Outcome } from './group-commit.js';
import type { RequestColumns } from './rows.js';

/**
 * Where accept() records the job of a stored request, in the same transaction:
 * - 'outbox': a row of the transactional outbox, published to RabbitMQ by a relay (outbox.ts);
 * - 'pg-queue': a ready job of the PostgreSQL queue (pg-queue.ts), for PostgreSQL without a broker;
 * - 'none': no job: a worker records a request its job carried (RABBITMQ_ACCEPT=broker). A row
 *   already there with the same flow and time of receipt is this request, recorded by an earlier
 *   delivery of its job: 'stored' again, not a duplicate.
 */
export type Dispatch = 'outbox' | 'pg-queue' | 'none';

/** One accept() call, ready for the batch statement. */
export interface AcceptRow extends RequestColumns {
  id: string;
  flowId: string;
  receivedAt: number;
  method: string;
  /** JSON string (see the schema). */
  path: string;
  rawBody: Buffer;
  jobId: string;
  maxAttempts: number;
}

export type AcceptResult = 'stored' | 'duplicate' | 'conflict';

/** Parameter types of one input row, in AcceptRow order (Buffers go as binary bytea: exact). */
const PARAM_TYPES = [
  'text', 'text', 'float8', 'text', 'text', 'text', 'text', 'text', 'boolean', 'bytea', 'text', 'text', 'text',
  'text', 'text', 'text', 'text[]', 'text', 'integer',
] as const;

function params(r: AcceptRow): unknown[] {
  return [
    r.id, r.flowId, r.receivedAt, r.method, r.path, r.query, r.headers, r.body, r.bodyIsRaw, r.rawBody,
    r.contentType, r.clientIp, r.attachments, r.rawAttachment, r.cloudEvent, r.cloudEvents, r.attachmentIds,
    r.jobId, r.maxAttempts,
  ];
}

/**
 * Accepts a batch in ONE statement, hence one round trip and one transaction (autocommit): a
 * multi-row INSERT … ON CONFLICT (id) DO NOTHING into requests, and for the rows it inserted, the
 * outbox rows or queue jobs; the statement returns per input row whether it was stored and, if not,
 * the flow of the row already there (duplicate vs REQUEST_ID_CONFLICT). When node-pg resolves, the
 * transaction has committed (synchronous_commit as configured on the server: never turned off).
 *
 * Rows go in id order, so two instances' batches that share ids lock them in the same order (no
 * deadlock). If the statement fails for one bad row (a statement error: 22xxx, 23xxx…), the batch
 * is retried row by row so the error stays with that row; any other failure fails the batch (503).
 */
export class AcceptBatch {
  /** Statement texts by padded size (one per size bucket). */
  private readonly sqlByRows = new Map<number, string>();

  constructor(
    private readonly db: PgDatabase,
    private readonly dispatch: Dispatch,
    /**
     * Outbox rows start held (not claimable) for this long: the accepting process publishes them
     * itself right after the commit; relays only take rows whose hold ran out (it died, or failed).
     */
    private readonly outboxHoldMs = 0,
    /** Statement sizes a batch is padded to, ascending, the last one MAX_BATCH_ROWS (bench:pg-accept compares sets). */
    private readonly buckets: readonly number[] = BUCKETS,
  ) {}

  run(rows: readonly AcceptRow[]): Promise<Array<Outcome<AcceptResult>>> {
    return batchOrEach(rows, (batch) => this.exec(batch), (r) => r.id);
  }

  private async exec(rows: readonly AcceptRow[]): Promise<Map<string, AcceptResult>> {
    const ordered = [...rows].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const size = bucket(ordered.length, this.buckets);
    const values: unknown[] = [];
    for (const r of ordered) values.push(...params(r));
    // Padding rows: all NULL, filtered out by the statement.
    for (let i = values.length; i < size * PARAM_TYPES.length; i++) values.push(null);
    const { rows: out } = await this.db.query<{ id: string; stored: boolean; existing: string | null; same_receipt?: boolean | null }>(
      this.sql(size),
      values,
      `hookd_accept_${this.dispatch}_${size}`,
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    // The time of receipt is compared by PostgreSQL, not after a round trip through its text
    // output (extra_float_digits below 1 rounds it: a redelivery would pass for a sender's retry).
    const judge = (id: string, flowId: string, sameReceipt: boolean | null | undefined): AcceptResult => {
      if (flowId !== byId.get(id)?.flowId) return 'conflict';
      return this.dispatch === 'none' && sameReceipt === true ? 'stored' : 'duplicate';
    };
    const results = new Map<string, AcceptResult>();
    const unresolved: string[] = [];
    for (const o of out) {
      if (o.stored) results.set(o.id, 'stored');
      else if (o.existing === null) unresolved.push(o.id);
      else results.set(o.id, judge(o.id, o.existing, o.same_receipt));
    }
    if (unresolved.length > 0) {
      // Inserted by a concurrent transaction that committed after this statement's snapshot was
      // taken (ON CONFLICT waited for it): a new statement sees it.
      const { rows: found } = await this.db.query<{ id: string; flow_id: string; same_receipt: boolean }>(
        `SELECT r.id, r.flow_id, r.received_at = u.received_at AS same_receipt
         FROM ${this.db.t.requests} r JOIN unnest($1::text[], $2::float8[]) AS u(id, received_at) ON u.id = r.id`,
        [unresolved, unresolved.map((id) => byId.get(id)!.receivedAt)],
      );
      for (const f of found) results.set(f.id, judge(f.id, f.flow_id, f.same_receipt));
    }
    for (const r of rows) {
      if (!results.has(r.id)) throw new Error(`accept: no outcome for request ${r.id}`);
    }
    return results;
  }

  private sql(n: number): string {
    let text = this.sqlByRows.get(n);
    if (text !== undefined) return text;
    const tuples: string[] = [];
    for (let i = 0; i < n; i++) {
      const base = i * PARAM_TYPES.length;
      tuples.push(`(${PARAM_TYPES.map((t, j) => `$${base + j + 1}::${t}`).join(', ')})`);
    }
    const { requests, jobs, outbox, requestAttachments } = this.db.t;
    const record =
      this.dispatch === 'none'
        ? `SELECT 1`
        : this.dispatch === 'pg-queue'
        ? `INSERT INTO ${jobs} (id, flow_id, request_id, state, attempts, max_attempts, run_at, enqueued_at)
           SELECT input.job_id, input.flow_id, input.id, 'ready', 0, input.max_attempts, ${NOW_MS}, ${NOW_MS}
           FROM input JOIN ins ON ins.id = input.id`
        : `INSERT INTO ${outbox} (id, flow_id, request_id, max_attempts, enqueued_at, available_at)
           SELECT input.job_id, input.flow_id, input.id, input.max_attempts, ${NOW_MS}, ${NOW_MS} + ${Math.max(0, Math.floor(this.outboxHoldMs))}
           FROM input JOIN ins ON ins.id = input.id`;
    text = `WITH input AS (
  SELECT * FROM (VALUES ${tuples.join(',\n         ')})
    AS v(id, flow_id, received_at, method, path, query, headers, body, body_is_raw, raw_body, content_type,
         client_ip, attachments, raw_attachment, cloud_event, cloud_events, attachment_ids, job_id, max_attempts)
  WHERE v.id IS NOT NULL
), ins AS (
  INSERT INTO ${requests} (id, flow_id, received_at, method, path, query, headers, body, body_is_raw, raw_body,
                           content_type, client_ip, attachments, raw_attachment, cloud_event, cloud_events)
  SELECT id, flow_id, received_at, method, path, query, headers, body, body_is_raw, raw_body,
         content_type, client_ip, attachments, raw_attachment, cloud_event, cloud_events
  FROM input
  ON CONFLICT (id) DO NOTHING
  RETURNING id
), job AS (
  ${record}
), refs AS (
  INSERT INTO ${requestAttachments} (attachment_id, request_id)
  SELECT a.id, input.id FROM input JOIN ins ON ins.id = input.id CROSS JOIN LATERAL unnest(input.attachment_ids) AS a(id)
  ON CONFLICT (attachment_id) DO NOTHING
)
SELECT input.id, ins.id IS NOT NULL AS stored,
       CASE WHEN ins.id IS NULL THEN (SELECT r.flow_id FROM ${requests} r WHERE r.id = input.id) END AS existing${
         this.dispatch === 'none' ? `,
       CASE WHEN ins.id IS NULL THEN (SELECT r.received_at = input.received_at FROM ${requests} r WHERE r.id = input.id) END AS same_receipt` : ''
       }
FROM input LEFT JOIN ins ON ins.id = input.id`;
    this.sqlByRows.set(n, text);
    return text;
  }
}

/** The most rows one accept statement takes. */
export const MAX_BATCH_ROWS = 512;

/**
 * Batch sizes are padded up to the next bucket (all-NULL rows that the statement skips), so each
 * connection prepares a bounded set of statement texts, once each: parsing and planning a multi-row
 * statement on every batch cost about a third of the server's CPU per accept (≈ 60 → 40 µs).
 * Each bucket is the one before plus one, times 1.25, rounded up (powers of two padded a batch of
 * 17 rows to 32, 19 parameters each): at most 25 % padding beyond n + 1, 20 statement texts.
 */
export const BUCKETS: readonly number[] = bucketsUpTo(MAX_BATCH_ROWS);

function bucketsUpTo(max: number): number[] {
  const out = [1];
  while (out[out.length - 1]! < max) out.push(Math.min(max, Math.ceil((out[out.length - 1]! + 1) * 1.25)));
  return out;
}

export function bucket(n: number, buckets: readonly number[] = BUCKETS): number {
  for (const b of buckets) if (n <= b) return b;
  throw new Error(`accept batch of ${n} rows exceeds ${MAX_BATCH_ROWS}`);
}
