import { stoppedFlowNote } from '../../../core/job.js';
import type { Op } from './define-op.js';

/** A flow started again: its jobs that wait because it was stopped are due now. How many. */
export const wakeStoppedJobs: Op<{ flowId: string }, number> = ({ db }) => {
  const wake = db.prepare(`UPDATE jobs SET run_at = ? WHERE flow_id = ? AND state = 'ready' AND run_at > ? AND last_error = ?`);
  return (a) => {
    const now = Date.now();
    return wake.run(now, a.flowId, now, stoppedFlowNote(a.flowId)).changes;
  };
};
