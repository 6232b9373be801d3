import { clip, type Op } from './define-op.js';
import { LEASE_MATCH, type LeaseToken } from './lease-token.js';

export interface DeadLetterJobArgs extends LeaseToken {
  error: string;
}

/** Failed for good: straight to the dead letters. False when the lease was lost. */
export const deadLetterJob: Op<DeadLetterJobArgs, boolean> = ({ db }) => {
  const bury = db.prepare(
    `UPDATE jobs SET state = 'dead', dead_at = ?, last_error = ?, lease_until = NULL, lease_owner = NULL
     WHERE ${LEASE_MATCH}`,
  );
  return (a) => bury.run(Date.now(), clip(a.error), a.jobId, a.attempts, a.owner).changes > 0;
};
