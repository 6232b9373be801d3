import type { Op } from './define-op.js';
import { LEASE_MATCH, type LeaseToken } from './lease-token.js';

/**
 * Give a leased job back (consumer shutting down): ready at once, and the delivery does not count
 * as an attempt. False when the lease was already lost. Its run_at stays (it was due when claimed):
 * the job keeps its turn in its flow instead of going behind the jobs that came after it.
 */
export const releaseJob: Op<LeaseToken, boolean> = ({ db }) => {
  const release = db.prepare(
    `UPDATE jobs SET state = 'ready', attempts = attempts - 1, run_at = min(run_at, ?), lease_until = NULL, lease_owner = NULL
     WHERE ${LEASE_MATCH}`,
  );
  return (t) => release.run(Date.now(), t.jobId, t.attempts, t.owner).changes > 0;
};
