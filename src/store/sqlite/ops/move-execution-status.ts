import type { Op } from './define-op.js';

export interface MoveExecutionStatusArgs {
  requestIds: string[];
  from: string;
  to: string;
  now: number;
  /** Set for final statuses, null otherwise. */
  finishedAt: number | null;
}

/** The requests' executions whose status is `from` get `to`; the count moved (ExecutionStore.moveStatus). */
export const moveExecutionStatus: Op<MoveExecutionStatusArgs, number> = ({ db }) => {
  const move = db.prepare(
    `UPDATE executions SET status = @to, updated_at = @now, finished_at = @finishedAt
     WHERE status = @from AND request_id IN (SELECT value FROM json_each(@ids))`,
  );
  return (a) => move.run({ to: a.to, from: a.from, now: a.now, finishedAt: a.finishedAt, ids: JSON.stringify(a.requestIds) }).changes;
};
