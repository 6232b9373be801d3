/**
 * Deleted flows, until what they left outside the store is gone (a RabbitMQ queue per flow; the
 * embedded queue keeps nothing outside the file, so here the records are only forgotten again):
 * FlowStore.delete() writes one, put() of the same id clears it.
 */
export const version = 6;
export const name = 'flow_deletions';

export const sql = `
CREATE TABLE IF NOT EXISTS flow_deletions (
  flow_id    TEXT PRIMARY KEY,
  deleted_at INTEGER NOT NULL
);
`;
