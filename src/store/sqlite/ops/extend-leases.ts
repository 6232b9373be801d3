import type { Op } from './define-op.js';

/** Heartbeat: push back the lease expiry of every job leased to `owner`. Returns how many. */
export const extendLeases: Op<{ owner: string }, number> = ({ db, leaseMs }) => {
  const extend = db.prepare("UPDATE jobs SET lease_until = ? WHERE state = 'leased' AND lease_owner = ?");
  return (a) => extend.run(Date.now() + leaseMs, a.owner).changes;
};
