import { clip, type Op } from './define-op.js';
import type { LeaseToken } from './lease-token.js';

export interface NackJobArgs extends LeaseToken {
  delayMs: number;
  error: string;
  /** The delivery gives its attempt back and cannot make the job dead (its flow is stopped). */
  uncounted?: boolean;
}

export type NackJobResult = { outcome: 'retry'; runAt: number } | { outcome: 'dead' } | { outcome: 'lost' };

/** Failed: ready again at now + delay, or dead when this delivery was the last attempt (unless uncounted). */
export const nackJob: Op<NackJobArgs, NackJobResult> = ({ db }) => {
  const nack = db.prepare(
    `UPDATE jobs SET
       state = CASE WHEN @uncounted = 0 AND attempts >= max_attempts THEN 'dead' ELSE 'ready' END,
       dead_at = CASE WHEN @uncounted = 0 AND attempts >= max_attempts THEN @now END,
       attempts = attempts - @uncounted,
       run_at = @runAt, last_error = @error, lease_until = NULL, lease_owner = NULL
     WHERE id = @jobId AND attempts = @attempts AND lease_owner = @owner AND state = 'leased'
     RETURNING state`,
  ).pluck();
  return (a) => {
    const now = Date.now();
    const runAt = now + Math.max(0, a.delayMs);
    const uncounted = a.uncounted === true ? 1 : 0;
    const state = nack.get({ now, runAt, uncounted, error: clip(a.error), jobId: a.jobId, attempts: a.attempts, owner: a.owner }) as
      | string
      | undefined;
    if (state === undefined) return { outcome: 'lost' };
    return state === 'dead' ? { outcome: 'dead' } : { outcome: 'retry', runAt };
  };
};
