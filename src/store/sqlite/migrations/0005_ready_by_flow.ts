/**
 * Ready jobs by flow, oldest first: claims take the due jobs of several flows in turn instead of
 * the oldest of all (ops/claim-jobs.ts), so that a flow with a backlog does not hold up the jobs
 * of every other flow. Partial, like jobs_ready: only waiting jobs are in it.
 */
export const version = 5;
export const name = 'ready_by_flow';

export const sql = `
CREATE INDEX IF NOT EXISTS jobs_ready_flow ON jobs (flow_id, run_at) WHERE state = 'ready';
`;
