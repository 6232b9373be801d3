/**
 * PostgreSQL's write group against a real server: two groups (two instances' execution writes)
 * that lock the same rows in opposite orders deadlock; the victim runs again instead of failing
 * every write of its group with a 503 (seen in a chaos review: a stalled instance's late writes
 * against a live one's, `begin()` keyed by request id and the others by execution id).
 */
import { expect, it } from 'vitest';
import { PgDatabase } from '../../src/store/postgres/database.js';
import { WriteGroup } from '../../src/store/postgres/write-group.js';
import { DATABASE_URL, pgSchemaPerTest } from './pg-schema.js';

const quietLogger = { warn: () => {}, error: () => {}, info: () => {} };
let schema = '';
const opened: PgDatabase[] = [];
const admin = pgSchemaPerTest({ onSchema: (s) => (schema = s), close: () => Promise.allSettled(opened.splice(0).map((db) => db.close())) });

it('a group chosen as a deadlock victim runs again: both groups commit, every write once', async () => {
  await admin.query(`CREATE SCHEMA "${schema}"`);
  await admin.query(`CREATE TABLE "${schema}".t (id integer PRIMARY KEY, v integer NOT NULL)`);
  await admin.query(`INSERT INTO "${schema}".t VALUES (1, 0), (2, 0)`);
  // PostgreSQL looks for a deadlock after deadlock_timeout (1 s by default).
  const open = () => {
    const db = new PgDatabase({ connectionString: DATABASE_URL, schema, logger: quietLogger });
    opened.push(db);
    return db;
  };
  const a = new WriteGroup(open());
  const b = new WriteGroup(open());
  // Each group's first statement holds its row a moment, so that both hold one before asking for
  // the other; the keys sort the statements as listed, rows in opposite orders.
  const update = (id: number, hold: boolean) => `UPDATE "${schema}".t SET v = v + 1 WHERE id = ${id}${hold ? ' RETURNING pg_sleep(0.3)' : ''}`;
  const results = await Promise.allSettled([
    a.query(update(1, true), [], 'k1'),
    a.query(update(2, false), [], 'k2'),
    b.query(update(2, true), [], 'k1'),
    b.query(update(1, false), [], 'k2'),
  ]);
  expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
  const { rows } = await admin.query<{ id: number; v: number }>(`SELECT id, v FROM "${schema}".t ORDER BY id`);
  expect(rows).toEqual([{ id: 1, v: 2 }, { id: 2, v: 2 }]);
}, 20_000);
