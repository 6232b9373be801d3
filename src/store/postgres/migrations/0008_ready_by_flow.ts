/**
 * Ready jobs by flow, oldest first: claims take the due jobs of several flows in turn
 * (queue-sql.ts, claim; SQLite's migration 5 says why).
 */
export const version = 8;
export const name = 'ready_by_flow';

export const sql = `
CREATE INDEX IF NOT EXISTS jobs_ready_flow ON jobs (flow_id, run_at) WHERE state = 'ready';
`;
