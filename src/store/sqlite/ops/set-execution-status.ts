import { NOT_FINISHED_SQL } from '../../unfinished-execution.js';
import type { Op } from './define-op.js';

export interface SetExecutionStatusArgs {
  executionId: string;
  status: string;
  now: number;
  /** Set for final statuses (completed, filtered, dead), null otherwise. */
  finishedAt: number | null;
  error: string | null;
}

/**
 * False when the execution is unknown. The error column always reflects the latest status change.
 * A completed or filtered execution stays as it is (NOT_FINISHED_SQL).
 */
export const setExecutionStatus: Op<SetExecutionStatusArgs, boolean> = ({ db }) => {
  const update = db.prepare(
    `UPDATE executions SET status = ?, updated_at = ?, finished_at = ?, error = ? WHERE id = ? AND ${NOT_FINISHED_SQL}`,
  );
  const exists = db.prepare('SELECT 1 FROM executions WHERE id = ?').pluck();
  return (a) => update.run(a.status, a.now, a.finishedAt, a.error, a.executionId).changes > 0 || exists.get(a.executionId) !== undefined;
};
