/**
 * The hookd processes sharing this database, each seen every few seconds: per-flow rate limits are
 * enforced by each instance as its share of the flow's limit (src/store/postgres/instances.ts).
 */
export const version = 3;
export const name = 'instances';

export const sql = `
CREATE TABLE instances (
  id      text COLLATE "C" PRIMARY KEY,
  seen_at float8 NOT NULL -- epoch ms, database clock
);
`;
