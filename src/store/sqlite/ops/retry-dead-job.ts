import type { RetryDeadOutcome } from '../../../core/job.js';
import type { Op } from './define-op.js';
import { prepareMoveStatus } from './move-execution-status.js';

/** A dead letter made ready again (both retries): attempts from 1, the lost deliveries given back. */
export const REVIVED = `state = 'ready', attempts = 0, max_attempts = max_attempts - lost, lost = 0, run_at = @now, dead_at = NULL`;
/** Only a job whose flow exists is revived: the runner would only dead-letter it again. */
export const FLOW_EXISTS = 'EXISTS (SELECT 1 FROM flows WHERE flows.id = jobs.flow_id)';

/**
 * The executions of revived jobs wait for their delivery again: `retrying`, no longer finished
 * (in the revive's transaction: the runner cannot have taken the jobs yet). The error stays.
 */
export function executionsRetrying(move: ReturnType<typeof prepareMoveStatus>, requestIds: string[], now: number): void {
  if (requestIds.length > 0) move({ requestIds, from: 'dead', to: 'retrying', now, finishedAt: null });
}

/**
 * Dead letter back to ready with attempts reset (last_error kept for context), and the attempts
 * lost deliveries added given back (claim-jobs.ts), only while its flow exists: the runner would
 * only dead-letter it again. `revived`, `notDead` (no such dead letter) or `noFlow`.
 */
export const retryDeadJob: Op<{ jobId: string }, RetryDeadOutcome> = ({ db }) => {
  const revive = db.prepare(`UPDATE jobs SET ${REVIVED} WHERE id = @jobId AND state = 'dead' AND ${FLOW_EXISTS} RETURNING request_id`).pluck();
  const move = prepareMoveStatus(db);
  const dead = db.prepare(`SELECT 1 FROM jobs WHERE id = ? AND state = 'dead'`).pluck();
  return (a) => {
    const now = Date.now();
    const requestId = revive.get({ now, jobId: a.jobId }) as string | undefined;
    if (requestId === undefined) return dead.get(a.jobId) === undefined ? 'notDead' : 'noFlow';
    executionsRetrying(move, [requestId], now);
    return 'revived';
  };
};
