import type BetterSqlite3 from 'better-sqlite3';
import type { Op } from './define-op.js';

export interface MoveExecutionStatusArgs {
  requestIds: string[];
  from: string;
  to: string;
  now: number;
  /** Set for final statuses, null otherwise. */
  finishedAt: number | null;
}

/**
 * The requests' executions whose status is `from` get `to`; the count moved. Also what a revived
 * dead letter's execution goes through, in the revive's transaction (retry-dead-job(s).ts).
 */
export function prepareMoveStatus(db: BetterSqlite3.Database): (a: MoveExecutionStatusArgs) => number {
  const move = db.prepare(
    `UPDATE executions SET status = @to, updated_at = @now, finished_at = @finishedAt
     WHERE status = @from AND request_id IN (SELECT value FROM json_each(@ids))`,
  );
  return (a) => move.run({ to: a.to, from: a.from, now: a.now, finishedAt: a.finishedAt, ids: JSON.stringify(a.requestIds) }).changes;
}

/** ExecutionStore.moveStatus. */
export const moveExecutionStatus: Op<MoveExecutionStatusArgs, number> = ({ db }) => prepareMoveStatus(db);
