/**
 * Whether each instance runs flows (has workers): a flow's execution rate on the PostgreSQL queue
 * is split among those only (an ingress-only instance starts no execution; instances.ts).
 */
export const version = 13;
export const name = 'instances_runs_flows';

export const sql = `
ALTER TABLE instances ADD COLUMN IF NOT EXISTS runs_flows boolean NOT NULL DEFAULT true;
`;
