import { newId } from '../ids.js';
import type { ExecutionRow, StepRow } from '../../rows.js';
import type { Op } from './define-op.js';

export interface BeginExecutionArgs {
  requestId: string;
  flowId: string;
  attempt: number;
  now: number;
  queueDelayMs: number | null;
}

export interface BeginExecutionResult {
  row: ExecutionRow;
  steps: StepRow[];
}

/**
 * Get-or-create the execution of a request (unique index on request_id): a redelivery continues
 * the same execution; a completed or filtered one is returned untouched. queue_delay_ms is only
 * written on create.
 */
export const beginExecution: Op<BeginExecutionArgs, BeginExecutionResult> = ({ db }) => {
  const upsert = db.prepare(
    `INSERT INTO executions (id, request_id, flow_id, status, attempts, created_at, updated_at, queue_delay_ms)
     VALUES (?, ?, ?, 'running', ?, ?, ?, ?)
     ON CONFLICT (request_id) DO UPDATE SET
       status = 'running', attempts = excluded.attempts, updated_at = excluded.updated_at, finished_at = NULL
     WHERE executions.status NOT IN ('completed', 'filtered')
     RETURNING *`,
  );
  const finished = db.prepare('SELECT * FROM executions WHERE request_id = ?');
  const steps = db.prepare('SELECT * FROM execution_steps WHERE execution_id = ? ORDER BY seq');
  return (a) => {
    const id = newId();
    // No row back: the execution exists and is completed or filtered, and stays as it is.
    const row = (upsert.get(id, a.requestId, a.flowId, a.attempt, a.now, a.now, a.queueDelayMs) ??
      finished.get(a.requestId)) as ExecutionRow;
    // A new execution has no steps yet: skip the query on the hot path.
    return { row, steps: row.id === id ? [] : (steps.all(row.id) as StepRow[]) };
  };
};
