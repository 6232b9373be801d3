import type { Op } from './define-op.js';

/**
 * Let every lease run out now, at start-up, when this process holds the database file's lock
 * (file-lock.ts): the leases were given to a process that is gone, so waiting for them to expire
 * (QUEUE_LEASE) only delays the work. The next claim turns them back into ready jobs (or dead
 * letters, after a last attempt) exactly as if they had expired: a delivery lost in a crash counts
 * as an attempt once its job had begun (claim-jobs.ts). Returns how many leases it ended.
 */
export const expireLeases: Op<null, number> = ({ db }) => {
  const expire = db.prepare(`UPDATE jobs SET lease_until = ? WHERE state = 'leased'`);
  return () => expire.run(Date.now()).changes;
};
