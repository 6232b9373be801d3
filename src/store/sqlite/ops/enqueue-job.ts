import { newId } from '../ids.js';
import type { Op } from './define-op.js';

export interface EnqueueJobArgs {
  flowId: string;
  requestId: string;
  maxAttempts: number;
  runAt: number | null;
}

/** A ready job (re-queue, replay). Returns its id and when it becomes due. */
export const enqueueJob: Op<EnqueueJobArgs, { jobId: string; runAt: number }> = ({ db }) => {
  const insert = db.prepare(
    `INSERT INTO jobs (id, flow_id, request_id, state, attempts, max_attempts, run_at, enqueued_at)
     VALUES (?, ?, ?, 'ready', 0, ?, ?, ?)`,
  );
  return (a) => {
    const now = Date.now();
    const jobId = newId();
    const runAt = a.runAt ?? now;
    insert.run(jobId, a.flowId, a.requestId, a.maxAttempts, runAt, now);
    return { jobId, runAt };
  };
};
