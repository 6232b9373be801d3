import type { Op } from './define-op.js';

/**
 * Heartbeat: push back the lease expiry of the jobs `owner` still holds (running or prefetched),
 * by id. Not every job leased to the owner: one whose ack or nack write failed, or whose hand-off
 * never reached the consumer, must see its lease expire and be delivered again.
 * Returns the ids whose lease was extended: any other is no longer this owner's.
 */
export const extendLeases: Op<{ owner: string; jobIds: readonly string[] }, string[]> = ({ db, leaseMs }) => {
  const extend = db
    .prepare("UPDATE jobs SET lease_until = ? WHERE state = 'leased' AND lease_owner = ? AND id IN (SELECT value FROM json_each(?)) RETURNING id")
    .pluck();
  return (a) => (a.jobIds.length === 0 ? [] : (extend.all(Date.now() + leaseMs, a.owner, JSON.stringify(a.jobIds)) as string[]));
};
