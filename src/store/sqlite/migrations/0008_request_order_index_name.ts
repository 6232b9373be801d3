/**
 * Migration 3 was shipped twice: its first text (builds of December 5 2026, 07:37 to 09:09) rebuilt
 * the retention index as `requests_received_at (received_at, id)`, the text since then builds
 * `requests_received_at_id`. Same columns, other names: a database migrated by the first one
 * differs from a new one, and a later migration naming the index would do the wrong thing there.
 * Made the same here: a no-op on the others; on those, the index is built under its name (a pass
 * over the requests at that start) and the other one dropped.
 */
export const version = 8;
export const name = 'request_order_index_name';

export const sql = `
CREATE INDEX IF NOT EXISTS requests_received_at_id ON requests (received_at, id);
DROP INDEX IF EXISTS requests_received_at;
`;
