/**
 * Deleted flows, until every instance knows and the flow's RabbitMQ queue is removed
 * (src/flow-queue-cleanup.ts): FlowStore.delete() writes one, put() of the same id clears it.
 */
export const version = 9;
export const name = 'flow_deletions';

export const sql = `
CREATE TABLE IF NOT EXISTS flow_deletions (
  flow_id    TEXT PRIMARY KEY,
  deleted_at BIGINT NOT NULL
);
`;
