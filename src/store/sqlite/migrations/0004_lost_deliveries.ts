/**
 * A delivery lost before its job began (a crash of the process holding it, prefetched or handed
 * off but never started) is not counted as an attempt: the expiry gives the job one more attempt
 * instead, at most LOST_DELIVERY_LIMIT times (`lost` counts them; a dead-letter retry gives back the max_attempts they added and starts afresh), so that a job that
 * kills its consumer before it begins still stops (ops/claim-jobs.ts).
 */
export const version = 4;
export const name = 'lost_deliveries';

export const sql = `
ALTER TABLE jobs ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
`;
