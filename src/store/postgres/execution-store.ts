import { E, HookdError } from '../../core/errors.js';
import { FINAL_STATUSES, type Execution, type ExecutionStatus, type StepRecord } from '../../core/execution.js';
import type { BeginExecution, ExecutionListQuery, ExecutionStore, RunRecord, StatusChange } from '../contracts.js';
import type { PgDatabase } from './database.js';
import { storeClosed } from './errors.js';
import { GroupCommit } from './group-commit.js';
import { NOT_FINISHED_SQL } from '../unfinished-execution.js';
import { newId } from './ids.js';
import { SaveRuns } from './save-runs.js';
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
  /** Whole runs (one write per job on the hot path): one statement per batch (save-runs.ts). */
  private readonly runs: GroupCommit<RunRecord, string>;

  constructor(private readonly db: PgDatabase) {
    this.writes = new WriteGroup(db);
    const saveRuns = new SaveRuns(db);
    this.runs = new GroupCommit((records) => saveRuns.run(records), { maxItems: 256, maxBytes: Number.POSITIVE_INFINITY, maxInflight: 1 });
  }

  /** Group commit at work: transactions and the writes they carried. */
  get counters(): { readonly batches: number; readonly items: number } {
    return this.writes.counters;
  }

  /** Group commit of whole runs: statements and the runs they carried. */
  get runCounters(): { readonly batches: number; readonly items: number } {
    return this.runs.counters;
  }

  /** Wait for the writes in flight (before the pool closes). */
  async close(): Promise<void> {
    await Promise.all([this.writes.drain(), this.runs.drain()]);
  }

  /**
   * Get-or-create by request_id: INSERT … ON CONFLICT (request_id) DO UPDATE, so a redelivery, even
   * racing another consumer, continues the one execution. queue_delay_ms is only written on create.
   */
  async begin(a: BeginExecution): Promise<Execution> {
    const id = newId();
    const { rows } = await this.writes.query<ExecutionRow>(
      `INSERT INTO ${this.db.t.executions} AS e
         (id, request_id, flow_id, status, attempts, created_at, updated_at, queue_delay_ms)
       VALUES ($1, $2, $3, 'running', $4, $5, $5, $6)
       ON CONFLICT (request_id) DO UPDATE SET
         status = 'running', attempts = excluded.attempts, updated_at = excluded.updated_at, finished_at = NULL
       WHERE e.status NOT IN ('completed', 'filtered')
       RETURNING ${EXECUTION_COLUMNS}`,
      [id, a.requestId, a.flowId, a.attempt, a.now, a.queueDelayMs ?? null],
      a.requestId,
      'hookd_execution_begin',
    );
    // No row back: the execution exists and is completed or filtered, and stays as it is.
    const row =
      rows[0] ??
      (await this.db.query<ExecutionRow>(`SELECT ${EXECUTION_COLUMNS} FROM ${this.db.t.executions} WHERE request_id = $1`, [a.requestId])).rows[0]!;
    // A new execution has no steps yet: skip the query on the hot path.
    return toExecution(row, row.id === id ? [] : await this.steps(row.id));
  }

  /**
   * A whole run: upsert the request's execution as final and replace its step records. Concurrent
   * runs share one statement and its commit (save-runs.ts); an execution already completed or
   * filtered is left as it was.
   */
  async saveRun(r: RunRecord): Promise<string> {
    if (this.db.closed) throw storeClosed();
    return this.runs.submit(r, r.requestId, 0);
  }

  async recordStep(executionId: string, record: StepRecord, cursor?: Execution['cursor'], finish?: StatusChange): Promise<void> {
    // One statement: the UPDATE locks the execution and takes the next seq (and, finishing, sets
    // the status as setStatus does), the INSERT appends.
    const set =
      finish === undefined
        ? 'updated_at = greatest(updated_at, $2::float8)'
        : 'status = $12::text, updated_at = $13::float8, finished_at = $14::float8, error = $15::text';
    const { rowCount } = await this.writes.query(
      `WITH touched AS (
         UPDATE ${this.db.t.executions}
         SET ${set}, cursor = coalesce($3::text, cursor), step_count = step_count + 1
         WHERE id = $1 AND ${NOT_FINISHED_SQL}
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
        ...(finish === undefined ? [] : [finish.status, finish.now, FINAL_STATUSES.has(finish.status) ? finish.now : null, finish.error ?? null]),
      ],
      executionId,
      finish === undefined ? 'hookd_execution_record_step' : 'hookd_execution_record_last_step',
    );
    if (rowCount === 0) await this.mustExist(executionId); // or finished: nothing appended
  }

  /** After a write that changed nothing: NOT_FOUND unless the execution exists (a finished one is left as it is). */
  private async mustExist(executionId: string): Promise<void> {
    const { rowCount } = await this.db.query(`SELECT 1 FROM ${this.db.t.executions} WHERE id = $1`, [executionId]);
    if (rowCount === 0) throw new HookdError(E.NOT_FOUND, `Execution ${executionId}`);
  }

  async setStatus(executionId: string, status: ExecutionStatus, now: number, error?: string): Promise<void> {
    const { rowCount } = await this.writes.query(
      `UPDATE ${this.db.t.executions} SET status = $2, updated_at = $3, finished_at = $4, error = $5 WHERE id = $1 AND ${NOT_FINISHED_SQL}`,
      [executionId, status, now, FINAL_STATUSES.has(status) ? now : null, error ?? null],
      executionId,
      'hookd_execution_set_status',
    );
    if (rowCount === 0) await this.mustExist(executionId); // or finished: left as it is
  }

  async moveStatus(requestIds: readonly string[], from: ExecutionStatus, to: ExecutionStatus, now: number): Promise<number> {
    if (requestIds.length === 0) return 0;
    const { rowCount } = await this.db.query(
      `UPDATE ${this.db.t.executions} SET status = $3, updated_at = $4, finished_at = $5 WHERE status = $2 AND request_id = ANY($1::text[])`,
      [requestIds, from, to, now, FINAL_STATUSES.has(to) ? now : null],
    );
    return rowCount ?? 0;
  }

  get(id: string): Promise<Execution | undefined> {
    return this.one('id', id);
  }

  getByRequest(requestId: string): Promise<Execution | undefined> {
    return this.one('request_id', requestId);
  }

  async idsByRequest(requestIds: readonly string[]): Promise<Map<string, string>> {
    if (requestIds.length === 0) return new Map();
    const { rows } = await this.db.query<{ id: string; request_id: string }>(
      `SELECT id, request_id FROM ${this.db.t.executions} WHERE request_id = ANY($1::text[])`,
      [requestIds],
      'hookd_executions_ids_by_request',
    );
    return new Map(rows.map((r) => [r.request_id, r.id]));
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
