import { NOW_MS, type PgDatabase } from './database.js';
import type { PgRequestStore } from './request-store.js';

/** A job to publish to the broker, as accept() recorded it. */
export interface OutboxJob {
  /** The job id (UUIDv7): publish it as the message id. */
  id: string;
  flowId: string;
  requestId: string;
  maxAttempts: number;
  /** Commit time of the request (epoch ms, database clock). */
  enqueuedAt: number;
  /**
   * Times the row was claimed, this claim included. Above 1, an earlier relay claimed it and then
   * crashed, failed or was too slow: the job may already be on the broker (at-least-once).
   */
  claims: number;
}

export const DEFAULT_OUTBOX_LEASE_MS = 30_000;

/**
 * The transactional outbox (dispatch 'outbox', PostgreSQL + RabbitMQ). RequestStore.accept() commits
 * the request and one outbox row in the same transaction, so a 2xx never depends on the broker and a
 * committed request is never left without its job. A relay (outbox-relay.ts, or your own loop) then:
 *
 *   const jobs = await outbox.claimOutbox(256);   // lease rows: SKIP LOCKED, several relays share
 *   await publishWithConfirms(jobs);              // broker has them (publisher confirms)
 *   await outbox.markPublished(jobs.map(j => j.id)); // delete
 *
 * and on a failed publish `releaseOutbox(ids, delayMs)` (or nothing: the lease expires). Delivery to
 * the broker is at-least-once: a relay that dies between publish and markPublished leaves rows that
 * are published again after their lease, so consumers must tolerate a job twice (executions are
 * get-or-create per request, so a duplicate job resumes the same execution).
 *
 * `onCommitted` wakes a relay in this process right after a commit; rows of other instances (or
 * whose lease expired) are found by polling, e.g. every second.
 */
export class PgOutbox {
  constructor(
    private readonly db: PgDatabase,
    private readonly requests: PgRequestStore,
  ) {}

  /**
   * Lease up to `limit` publishable rows (oldest first) for `leaseMs`: other relays skip them until
   * the lease ends. Never blocks on rows another relay is claiming (FOR UPDATE SKIP LOCKED).
   */
  async claimOutbox(limit: number, leaseMs = DEFAULT_OUTBOX_LEASE_MS): Promise<OutboxJob[]> {
    const { rows } = await this.db.query<{
      id: string;
      flow_id: string;
      request_id: string;
      max_attempts: number;
      enqueued_at: number;
      claims: number;
    }>(
      `UPDATE ${this.db.t.outbox} SET available_at = ${NOW_MS} + $2::float8, claims = claims + 1
       WHERE id IN (
         SELECT id FROM ${this.db.t.outbox} WHERE available_at <= ${NOW_MS}
         ORDER BY available_at LIMIT $1::integer FOR UPDATE SKIP LOCKED)
       RETURNING id, flow_id, request_id, max_attempts, enqueued_at, claims`,
      [limit, leaseMs],
      'hookd_outbox_claim',
    );
    return rows
      .map((r) => ({
        id: r.id,
        flowId: r.flow_id,
        requestId: r.request_id,
        maxAttempts: r.max_attempts,
        enqueuedAt: r.enqueued_at,
        claims: r.claims,
      }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The broker confirmed these jobs: delete their rows. Returns how many were still there. */
  async markPublished(ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const { rowCount } = await this.db.query(`DELETE FROM ${this.db.t.outbox} WHERE id = ANY($1::text[])`, [ids]);
    return rowCount ?? 0;
  }

  /** Publishing failed: the rows become claimable again after `delayMs` (default at once). */
  async releaseOutbox(ids: readonly string[], delayMs = 0): Promise<number> {
    if (ids.length === 0) return 0;
    const { rowCount } = await this.db.query(
      `UPDATE ${this.db.t.outbox} SET available_at = ${NOW_MS} + $2::float8 WHERE id = ANY($1::text[])`,
      [ids, delayMs],
    );
    return rowCount ?? 0;
  }

  /**
   * Switching from the PostgreSQL queue to RabbitMQ: move the jobs left in the queue's table into
   * the outbox (publishable at once, by the relay), so no job is stranded in a table nothing reads
   * any more. Ready and leased jobs move: a leased one may still be running on an instance of the
   * old mode, and then runs twice (the second delivery resumes its execution); the attempts count
   * starts again. Dead jobs stay where they are, and are counted: retry them before switching.
   */
  async adoptQueueJobs(): Promise<{ moved: number; deadLeft: number }> {
    const { rowCount } = await this.db.query(
      // max_attempts - lost: the attempts lost deliveries added (queue-sql.ts, expireLeases) go;
      // the attempts count starts again in the broker.
      `WITH moved AS (DELETE FROM ${this.db.t.jobs} WHERE state <> 'dead' RETURNING id, flow_id, request_id, max_attempts - lost AS max_attempts, enqueued_at)
       INSERT INTO ${this.db.t.outbox} (id, flow_id, request_id, max_attempts, enqueued_at, available_at)
       SELECT id, flow_id, request_id, max_attempts, enqueued_at, ${NOW_MS} FROM moved
       ON CONFLICT (id) DO NOTHING`,
    );
    const { rows } = await this.db.query<{ n: number }>(`SELECT count(*)::integer AS n FROM ${this.db.t.jobs} WHERE state = 'dead'`);
    return { moved: rowCount ?? 0, deadLeft: rows[0]?.n ?? 0 };
  }

  /** Rows not yet published (a gauge for metrics and /readyz). */
  async backlog(): Promise<number> {
    const { rows } = await this.db.query<{ n: number }>(`SELECT count(*)::integer AS n FROM ${this.db.t.outbox}`);
    return rows[0]?.n ?? 0;
  }

  /** Called after each accept batch of this process that committed outbox rows. Returns unsubscribe. */
  onCommitted(listener: (count: number) => void): () => void {
    return this.requests.onCommitted(listener);
  }
}
