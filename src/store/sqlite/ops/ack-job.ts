import { LEASE_MATCH, type LeaseToken } from './lease-token.js';
import type { Op } from './define-op.js';

/** Done: delete the job if the lease is still ours. False when the lease was lost. */
export const ackJob: Op<LeaseToken, boolean> = ({ db }) => {
  const del = db.prepare(`DELETE FROM jobs WHERE ${LEASE_MATCH}`);
  return (t) => del.run(t.jobId, t.attempts, t.owner).changes > 0;
};
