import type { BulkRetryResult } from '../../../core/job.js';
import type { Op } from './define-op.js';
import { prepareMoveStatus } from './move-execution-status.js';
import { executionsRetrying, FLOW_EXISTS, REVIVED } from './retry-dead-job.js';

export interface RetryDeadJobsArgs {
  flowId: string | null;
  since: number | null;
  limit: number;
}

/**
 * Dead letters back to ready in bulk, oldest first, as retry-dead-job.ts does one: attempts reset,
 * lost deliveries given back, only those whose flow exists. Also counts what the selection leaves
 * dead (past the limit, or of a deleted flow).
 */
export const retryDeadJobs: Op<RetryDeadJobsArgs, BulkRetryResult> = ({ db }) => {
  const selection = `state = 'dead' AND (@flowId IS NULL OR flow_id = @flowId) AND (@since IS NULL OR dead_at >= @since)`;
  const revive = db.prepare(
    `UPDATE jobs SET ${REVIVED} WHERE id IN (SELECT id FROM jobs WHERE ${selection} AND ${FLOW_EXISTS} ORDER BY dead_at, id LIMIT @limit) RETURNING request_id`,
  ).pluck();
  const move = prepareMoveStatus(db);
  const left = db.prepare(`SELECT count(*) FROM jobs WHERE ${selection}`).pluck();
  return (a) => {
    const now = Date.now();
    const revived = revive.all({ ...a, now }) as string[];
    executionsRetrying(move, revived, now);
    return { retried: revived.length, remaining: left.get({ flowId: a.flowId, since: a.since }) as number };
  };
};
