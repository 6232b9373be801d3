import { E, HookdError } from '../../core/errors.js';
import { FINAL_STATUSES, type Execution, type ExecutionStatus, type StepRecord } from '../../core/execution.js';
import type { BeginExecution, ExecutionListQuery, ExecutionStore, RunRecord } from '../contracts.js';
import type { PgDatabase } from './database.js';
import { newId } from './ids.js';
import { WriteGroup } from './write-group.js';
import { toExecution, type ExecutionRow, type StepRow } from './rows.js';

const EXECUTION_COLUMNS =
  'id, request_id, flow_id, status, attempts, created_at, updated_at, finished_at, queue_delay_ms, error, cursor';

/**
 * Executions on PostgreSQL. Each write is one statement; the writes of concurrent jobs share a
 * transaction and its commit (write-group.ts). Concurrent writes to one execution serialise on its
 * row lock, in no guaranteed order: callers await each write before the next (the runner does when
 * orderedWrites is false).
 */
export class PgExecutionStore implements ExecutionStore {
  private readonly writes: WriteGroup;

  constructor(private readonly db: PgDatabase) {
    this.writes = new WriteGroup(db);
  }

  /** Group commit at work: transactions and the writes they carried. */
  get counters(): { readonly batches: number; readonly items: number } {
    return this.writes.counters;
  }

  /** Wait for the writes in flight (before the pool closes). */
  close(): Promise<void> {
    return this.writes.drain();
  }

  /**
   * Get-or-create by request_id: INSERT … ON CONFLICT (request_id) DO UPDATE, so a redelivery, even
   * racing another consumer, continues the one execution. queue_delay_ms is only written on create.
   */
  async begin(a: BeginExecution): Promise<Execution> {
    const id = newId();
    const { rows } = await this.writes.query<ExecutionRow>(
      `INSERT INTO ${this.db.t.executions}
         (id, request_id, flow_id, status, attempts, created_at, updated_at, queue_delay_ms)
       VALUES ($1, $2, $3, 'running', $4, $5, $5, $6)
       ON CONFLICT (request_id) DO UPDATE SET
         status = 'running', attempts = excluded.attempts, updated_at = excluded.updated_at, finished_at = NULL
       RETURNING ${EXECUTION_COLUMNS}`,
      [id, a.requestId, a.flowId, a.attempt, a.now, a.queueDelayMs ?? null],
      a.requestId,
      'hookd_execution_begin',
    );
    const row = rows[0]!;
    // A new execution has no steps yet: skip the query on the hot path.
    return toExecution(row, row.id === id ? [] : await this.steps(row.id));
  }

  /**
   * A whole run in one statement (one round trip, one transaction): upsert the request's execution
   * as final and replace its step records. An execution already completed or filtered is left as it
   * was (the ON CONFLICT … WHERE stops the update, so `up` is empty and nothing else is written).
   * The old steps are deleted before the new ones go in: `ins` reads `cleared` first, and rows the
   * same transaction deleted do not count as unique-key conflicts.
   */
  async saveRun(r: RunRecord): Promise<string> {
    const fresh = newId();
    const e = this.db.t.executions;
    const col = <K extends keyof StepRecord>(k: K): Array<StepRecord[K] | null> => r.steps.map((s) => s[k] ?? null);
    const { rows } = await this.writes.query<{ id: string }>(
      `WITH up AS (
         INSERT INTO ${e} AS cur (id, request_id, flow_id, status, attempts, created_at, updated_at, finished_at,
                                 queue_delay_ms, error, cursor, step_count)
         VALUES ($1, $2, $3, $4, $5::integer, $6::float8, $7::float8, $7::float8, $8::float8, $9::text, NULL, $10::integer)
         ON CONFLICT (request_id) DO UPDATE SET
           status = excluded.status, attempts = excluded.attempts, updated_at = excluded.updated_at,
           finished_at = excluded.finished_at, error = excluded.error, cursor = NULL, step_count = excluded.step_count
         WHERE cur.status NOT IN ('completed', 'filtered')
         RETURNING id
       ), cleared AS (
         DELETE FROM ${this.db.t.steps} WHERE execution_id IN (SELECT id FROM up WHERE id <> $1) RETURNING 1
       ), ins AS (
         INSERT INTO ${this.db.t.steps}
           (execution_id, seq, step_id, type, status, attempt, started_at, finished_at, input, output, error)
         SELECT up.id, s.seq, s.step_id, s.type, s.status, s.attempt, s.started_at, s.finished_at, s.input, s.output, s.error
         FROM up CROSS JOIN unnest($11::text[], $12::text[], $13::text[], $14::integer[], $15::float8[], $16::float8[],
                                   $17::text[], $18::text[], $19::text[])
              WITH ORDINALITY AS s(step_id, type, status, attempt, started_at, finished_at, input, output, error, seq)
         WHERE (SELECT count(*) FROM cleared) >= 0
       )
       SELECT id FROM up
       UNION ALL
       SELECT id FROM ${e} WHERE request_id = $2 AND NOT EXISTS (SELECT 1 FROM up)`,
      [
        fresh,
        r.requestId,
        r.flowId,
        r.status,
        r.attempt,
        r.startedAt,
        r.finishedAt,
        r.queueDelayMs ?? null,
        r.error ?? null,
        r.steps.length,
        col('stepId'),
        col('type'),
        col('status'),
        col('attempt'),
        col('startedAt'),
        col('finishedAt'),
        col('input'),
        col('output'),
        col('error'),
      ],
      r.requestId,
      'hookd_execution_save_run',
    );
    const id = rows[0]?.id;
    if (id !== undefined) return id;
    // Finished by a concurrent transaction that committed after this statement's snapshot.
    const again = await this.db.query<{ id: string }>(`SELECT id FROM ${e} WHERE request_id = $1`, [r.requestId]);
    return again.rows[0]!.id;
  }

  async recordStep(executionId: string, record: StepRecord, cursor?: Execution['cursor']): Promise<void> {
    // One statement: the UPDATE locks the execution and takes the next seq, the INSERT appends.
    const { rowCount } = await this.writes.query(
      `WITH touched AS (
         UPDATE ${this.db.t.executions}
         SET updated_at = greatest(updated_at, $2::float8), cursor = coalesce($3::text, cursor), step_count = step_count + 1
         WHERE id = $1
         RETURNING id, step_count
       )
       INSERT INTO ${this.db.t.steps}
         (execution_id, seq, step_id, type, status, attempt, started_at, finished_at, input, output, error)
       SELECT id, step_count, $4::text, $5::text, $6::text, $7::integer, $8::float8, $2::float8, $9::text, $10::text, $11::text
       FROM touched`,
      [
        executionId,
        record.finishedAt,
        cursor === undefined ? null : JSON.stringify(cursor),
        record.stepId,
        record.type,
        record.status,
        record.attempt,
        record.startedAt,
        record.input ?? null,
        record.output ?? null,
        record.error ?? null,
      ],
      executionId,
      'hookd_execution_record_step',
    );
    if (rowCount === 0) throw new HookdError(E.NOT_FOUND, `Execution ${executionId}`);
  }

  async setStatus(executionId: string, status: ExecutionStatus, now: number, error?: string): Promise<void> {
    const { rowCount } = await this.writes.query(
      `UPDATE ${this.db.t.executions} SET status = $2, updated_at = $3, finished_at = $4, error = $5 WHERE id = $1`,
      [executionId, status, now, FINAL_STATUSES.has(status) ? now : null, error ?? null],
      executionId,
      'hookd_execution_set_status',
    );
    if (rowCount === 0) throw new HookdError(E.NOT_FOUND, `Execution ${executionId}`);
  }

  get(id: string): Promise<Execution | undefined> {
    return this.one('id', id);
  }

  getByRequest(requestId: string): Promise<Execution | undefined> {
    return this.one('request_id', requestId);
  }

  async list(q: ExecutionListQuery): Promise<Execution[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (q.flowId !== undefined) {
      params.push(q.flowId);
      where.push(`flow_id = $${params.length}`);
    }
    if (q.status !== undefined) {
      params.push(q.status);
      where.push(`status = $${params.length}`);
    }
    if (q.before !== undefined) {
      params.push(q.before);
      where.push(`id < $${params.length}`);
    }
    params.push(q.limit);
    const { rows } = await this.db.query<ExecutionRow>(
      `SELECT ${EXECUTION_COLUMNS} FROM ${this.db.t.executions}
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${params.length}`,
      params,
    );
    if (rows.length === 0) return [];
    const { rows: steps } = await this.db.query<StepRow>(
      `SELECT * FROM ${this.db.t.steps} WHERE execution_id = ANY($1::text[]) ORDER BY execution_id, seq`,
      [rows.map((r) => r.id)],
    );
    const byExecution = new Map<string, StepRow[]>();
    for (const s of steps) {
      const list = byExecution.get(s.execution_id);
      if (list) list.push(s);
      else byExecution.set(s.execution_id, [s]);
    }
    return rows.map((r) => toExecution(r, byExecution.get(r.id) ?? []));
  }

  private async one(column: 'id' | 'request_id', key: string): Promise<Execution | undefined> {
    const { rows } = await this.db.query<ExecutionRow>(
      `SELECT ${EXECUTION_COLUMNS} FROM ${this.db.t.executions} WHERE ${column} = $1`,
      [key],
    );
    const row = rows[0];
    return row === undefined ? undefined : toExecution(row, await this.steps(row.id));
  }

  private async steps(executionId: string): Promise<StepRow[]> {
    const { rows } = await this.db.query<StepRow>(
      `SELECT * FROM ${this.db.t.steps} WHERE execution_id = $1 ORDER BY seq`,
      [executionId],
      'hookd_execution_steps',
    );
    return rows;
  }
}
