/**
 * A delivery lost before its job began is not counted as an attempt (queue-sql.ts, expireLeases;
 * SQLite's migration 4 says why). A constant default: PostgreSQL adds the column without
 * rewriting the table.
 */
export const version = 7;
export const name = 'lost_deliveries';

export const sql = `
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS lost integer NOT NULL DEFAULT 0;
`;
