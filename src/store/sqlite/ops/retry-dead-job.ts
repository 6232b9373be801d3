import type { Op } from './define-op.js';

/**
 * Dead letter back to ready with attempts reset (last_error kept for context), and the attempts
 * lost deliveries added given back (claim-jobs.ts). False when not dead.
 */
export const retryDeadJob: Op<{ jobId: string }, boolean> = ({ db }) => {
  const revive = db.prepare(
    `UPDATE jobs SET state = 'ready', attempts = 0, max_attempts = max_attempts - lost, lost = 0, run_at = ?, dead_at = NULL
     WHERE id = ? AND state = 'dead'`,
  );
  return (a) => revive.run(Date.now(), a.jobId).changes > 0;
};
