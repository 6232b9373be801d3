/**
 * PostgreSQL's write group against a real server: two groups (two instances' execution writes)
 * that lock the same rows in opposite orders deadlock; the victim runs again instead of failing
 * every write of its group with a 503 (seen in a chaos review: a stalled instance's late writes
 * against a live one's, `begin()` keyed by request id and the others by execution id).
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
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

/** A TCP relay to PostgreSQL that holds every chunk `ms` each way: a database farther away. */
async function delayingProxy(ms: number): Promise<{ url: string; close(): void }> {
  const target = new URL(DATABASE_URL);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    // Same delay for every chunk: timers of equal length fire in order, so the bytes stay in order.
    client.on('data', (chunk) => setTimeout(() => upstream.write(chunk), ms));
    upstream.on('data', (chunk) => setTimeout(() => client.write(chunk), ms));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(DATABASE_URL);
  url.host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return {
    url: url.toString(),
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

it('a group costs one round trip, not one per statement (a database 30 ms away)', async () => {
  await admin.query(`CREATE SCHEMA "${schema}"`);
  await admin.query(`CREATE TABLE "${schema}".t (id integer PRIMARY KEY, v integer NOT NULL)`);
  const proxy = await delayingProxy(30);
  try {
    const db = new PgDatabase({ connectionString: proxy.url, schema, logger: quietLogger });
    opened.push(db);
    const group = new WriteGroup(db);
    const insert = (id: number) => group.query(`INSERT INTO "${schema}".t VALUES ($1, 0)`, [id], `k${id}`, 'wg_insert');
    await Promise.all([insert(1), insert(2), insert(3)]); // connections open, statement prepared
    const started = performance.now();
    const before = group.counters.batches;
    await Promise.all(Array.from({ length: 40 }, (_, i) => insert(100 + i)));
    const elapsed = performance.now() - started;
    // Round trips of 60 ms: one per statement was ≥ 42 × 60 ms; one per group is a few.
    expect(group.counters.batches - before).toBeLessThanOrEqual(2);
    expect(elapsed).toBeLessThan(600);
    const { rows } = await admin.query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".t`);
    expect(Number(rows[0]!.n)).toBe(43);
  } finally {
    proxy.close();
  }
}, 20_000);

it('a failing statement fails alone, the rest of its group commits, and its connection goes on (named statements first sent behind it)', async () => {
  await admin.query(`CREATE SCHEMA "${schema}"`);
  await admin.query(`CREATE TABLE "${schema}".t (id integer PRIMARY KEY, v integer NOT NULL)`);
  const db = new PgDatabase({ connectionString: DATABASE_URL, schema, logger: quietLogger });
  opened.push(db);
  const group = new WriteGroup(db);
  const insert = (id: number, v: number, name: string) =>
    group.query(`INSERT INTO "${schema}".t VALUES ($1, 10 / $2::integer)`, [id, v], `k${id}`, name);
  // Keys run in order: the division by zero (k2) aborts the transaction before the Parse of
  // 'second' (k3, k4) reaches the server; the group runs again without k2.
  const results = await Promise.allSettled([insert(1, 1, 'first'), insert(2, 0, 'first'), insert(3, 1, 'second'), insert(4, 1, 'second')]);
  expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
  expect(results[1]).toMatchObject({ reason: { statusCode: 500 } });
  // The same names again, on the same connection: prepared once, not twice.
  const again = await Promise.allSettled([insert(5, 1, 'first'), insert(6, 1, 'second'), insert(7, 2, 'second')]);
  expect(again.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
  const { rows } = await admin.query<{ id: number }>(`SELECT id FROM "${schema}".t ORDER BY id`);
  expect(rows.map((r) => r.id)).toEqual([1, 3, 4, 5, 6, 7]);
});
