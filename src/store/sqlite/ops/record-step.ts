import { NOT_FINISHED_SQL } from '../../unfinished-execution.js';
import type { Op } from './define-op.js';

export interface RecordStepArgs {
  executionId: string;
  stepId: string;
  type: string;
  status: string;
  attempt: number;
  startedAt: number;
  finishedAt: number;
  input: string | null;
  output: string | null;
  error: string | null;
  /** JSON of {nextStep, input}; null keeps the stored cursor. */
  cursor: string | null;
  /** Also change the execution's status (as setExecutionStatus), in the same write. */
  finish?: { status: string; now: number; finishedAt: number | null; error: string | null };
}

/**
 * Append a step record (seq = last + 1) and move the cursor; with `finish`, change the status too.
 * False when the execution is unknown.
 * Nothing is appended to a completed or filtered execution (NOT_FINISHED_SQL).
 */
export const recordStep: Op<RecordStepArgs, boolean> = ({ db }) => {
  const touch = db.prepare(
    `UPDATE executions SET updated_at = max(updated_at, ?), cursor = coalesce(?, cursor) WHERE id = ? AND ${NOT_FINISHED_SQL}`,
  );
  const touchAndFinish = db.prepare(
    `UPDATE executions SET cursor = coalesce(?, cursor), status = ?, updated_at = ?, finished_at = ?, error = ?
     WHERE id = ? AND ${NOT_FINISHED_SQL}`,
  );
  const exists = db.prepare('SELECT 1 FROM executions WHERE id = ?').pluck();
  const append = db.prepare(
    `INSERT INTO execution_steps (execution_id, seq, step_id, type, status, attempt, started_at, finished_at,
                                  input, output, error)
     SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?
     FROM execution_steps WHERE execution_id = ?`,
  );
  return (a) => {
    const f = a.finish;
    const touched =
      f === undefined
        ? touch.run(a.finishedAt, a.cursor, a.executionId)
        : touchAndFinish.run(a.cursor, f.status, f.now, f.finishedAt, f.error, a.executionId);
    if (touched.changes === 0) return exists.get(a.executionId) !== undefined;
    append.run(
      a.executionId,
      a.stepId,
      a.type,
      a.status,
      a.attempt,
      a.startedAt,
      a.finishedAt,
      a.input,
      a.output,
      a.error,
      a.executionId,
    );
    return true;
  };
};
