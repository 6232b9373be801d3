import { E, HookdError } from '../../core/errors.js';
import { FINAL_STATUSES, type Execution, type ExecutionStatus, type StepRecord } from '../../core/execution.js';
import type { BeginExecution, ExecutionListQuery, ExecutionStore, RunRecord, StatusChange } from '../contracts.js';
import type { Reader } from './reader.js';
import { toExecution, type ExecutionRow, type StepRow } from '../rows.js';
import type { WriterClient } from './writer/writer-client.js';

export class SqliteExecutionStore implements ExecutionStore {
  constructor(
    private readonly writer: WriterClient,
    private readonly reader: Reader,
  ) {}

  async begin(a: BeginExecution): Promise<Execution> {
    const { row, steps } = await this.writer.call('beginExecution', {
      requestId: a.requestId,
      flowId: a.flowId,
      attempt: a.attempt,
      now: a.now,
      queueDelayMs: a.queueDelayMs ?? null,
    });
    return toExecution(row, steps);
  }

  saveRun(r: RunRecord): Promise<string> {
    return this.writer.call('saveRun', {
      requestId: r.requestId,
      flowId: r.flowId,
      attempt: r.attempt,
      startedAt: r.startedAt,
      finishedAt: r.finishedAt,
      queueDelayMs: r.queueDelayMs ?? null,
      status: r.status,
      error: r.error ?? null,
      steps: r.steps.map((s) => ({
        stepId: s.stepId,
        type: s.type,
        status: s.status,
        attempt: s.attempt,
        startedAt: s.startedAt,
        finishedAt: s.finishedAt,
        input: s.input ?? null,
        output: s.output ?? null,
        error: s.error ?? null,
      })),
    });
  }

  async recordStep(executionId: string, record: StepRecord, cursor?: Execution['cursor'], finish?: StatusChange): Promise<void> {
    const found = await this.writer.call('recordStep', {
      executionId,
      stepId: record.stepId,
      type: record.type,
      status: record.status,
      attempt: record.attempt,
      startedAt: record.startedAt,
      finishedAt: record.finishedAt,
      input: record.input ?? null,
      output: record.output ?? null,
      error: record.error ?? null,
      cursor: cursor === undefined ? null : JSON.stringify(cursor),
      ...(finish === undefined
        ? {}
        : { finish: { status: finish.status, now: finish.now, finishedAt: FINAL_STATUSES.has(finish.status) ? finish.now : null, error: finish.error ?? null } }),
    });
    if (!found) throw new HookdError(E.NOT_FOUND, `Execution ${executionId}`);
  }

  async setStatus(executionId: string, status: ExecutionStatus, now: number, error?: string): Promise<void> {
    const found = await this.writer.call('setExecutionStatus', {
      executionId,
      status,
      now,
      finishedAt: FINAL_STATUSES.has(status) ? now : null,
      error: error ?? null,
    });
    if (!found) throw new HookdError(E.NOT_FOUND, `Execution ${executionId}`);
  }

  async moveStatus(requestIds: readonly string[], from: ExecutionStatus, to: ExecutionStatus, now: number): Promise<number> {
    if (requestIds.length === 0) return 0;
    return this.writer.call('moveExecutionStatus', { requestIds: [...requestIds], from, to, now, finishedAt: FINAL_STATUSES.has(to) ? now : null });
  }

  async get(id: string): Promise<Execution | undefined> {
    return this.one('SELECT * FROM executions WHERE id = ?', id);
  }

  async getByRequest(requestId: string): Promise<Execution | undefined> {
    return this.one('SELECT * FROM executions WHERE request_id = ?', requestId);
  }

  async idsByRequest(requestIds: readonly string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    // One lookup each on the request_id index: a page holds at most 1,000.
    this.reader.read('SELECT id FROM executions WHERE request_id = ?', (s) => {
      for (const requestId of requestIds) {
        const row = s.get(requestId) as { id: string } | undefined;
        if (row !== undefined) out.set(requestId, row.id);
      }
    });
    return out;
  }

  async list(q: ExecutionListQuery): Promise<Execution[]> {
    const where: string[] = [];
    const params: Array<string | number> = [];
    if (q.flowId !== undefined) {
      where.push('flow_id = ?');
      params.push(q.flowId);
    }
    if (q.status !== undefined) {
      where.push('status = ?');
      params.push(q.status);
    }
    if (q.before !== undefined) {
      where.push('id < ?');
      params.push(q.before);
    }
    params.push(q.limit);
    const sql = `SELECT * FROM executions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    const rows = this.reader.read(sql, (s) => s.all(...params) as ExecutionRow[]);
    if (rows.length === 0) return [];
    const steps = this.reader.read(
      `SELECT * FROM execution_steps WHERE execution_id IN (SELECT value FROM json_each(?))
       ORDER BY execution_id, seq`,
      (s) => s.all(JSON.stringify(rows.map((r) => r.id))) as StepRow[],
    );
    const byExecution = new Map<string, StepRow[]>();
    for (const s of steps) {
      const list = byExecution.get(s.execution_id);
      if (list) list.push(s);
      else byExecution.set(s.execution_id, [s]);
    }
    return rows.map((r) => toExecution(r, byExecution.get(r.id) ?? []));
  }

  private one(sql: string, key: string): Execution | undefined {
    const row = this.reader.read(sql, (s) => s.get(key) as ExecutionRow | undefined);
    if (row === undefined) return undefined;
    const steps = this.reader.read(
      'SELECT * FROM execution_steps WHERE execution_id = ? ORDER BY seq',
      (s) => s.all(row.id) as StepRow[],
    );
    return toExecution(row, steps);
  }
}
