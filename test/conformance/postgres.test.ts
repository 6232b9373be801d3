import { HookdError } from '../../src/core/errors.js';
import net from 'node:net';
import { v7 as uuidv7 } from 'uuid';
import { describe, expect, it } from 'vitest';
import type { StepRecord } from '../../src/core/execution.js';
import type { RunRecord } from '../../src/store/contracts.js';
import type { Delivery } from '../../src/queue/contract.js';
import {
  openPostgresBackend,
  openPostgresStores,
  startOutboxRelay,
  type OutboxJob,
  type PostgresBackend,
  type PostgresBackendOptions,
  type PostgresStores,
  type PostgresStoresOptions,
  migrate,
  PgDatabase,
  PgFlowOwners,
} from '../../src/store/postgres/index.js';
import { migrations } from '../../src/store/postgres/migrations/index.js';
import { DATABASE_URL, pgSchemaPerTest } from './pg-schema.js';
import { deferred, makeMessage, median, rejection, sleep, waitFor } from './helpers.js';
import { BUCKETS, bucket } from '../../src/store/postgres/accept-batch.js';
import { describeLeaseConformance } from './lease.suite.js';
import { describeQueueConformance } from './queue.suite.js';
import { describeStoreConformance } from './store.suite.js';

/**
 * PostgreSQL backend against a real server (DATABASE_URL, default the local test database). Each
 * test gets its own schema, dropped afterwards; an unreachable server fails the tests (no skip).
 */
let schema: string;
const openedBackends: PostgresBackend[] = [];
const openedStores: PostgresStores[] = [];
const quietLogger = { warn: () => {}, error: () => {}, info: () => {} };
const admin = pgSchemaPerTest({
  onSchema: (s) => (schema = s),
  close: () => Promise.allSettled([...openedBackends.splice(0).map((b) => b.close()), ...openedStores.splice(0).map((s) => s.close())]),
});

async function openBackend(extra: Partial<PostgresBackendOptions> = {}): Promise<PostgresBackend> {
  const b = await openPostgresBackend({ connectionString: DATABASE_URL, schema, logger: quietLogger, ...extra });
  openedBackends.push(b);
  return b;
}

async function openStores(extra: Partial<PostgresStoresOptions> = {}): Promise<PostgresStores> {
  const s = await openPostgresStores({ connectionString: DATABASE_URL, schema, logger: quietLogger, ...extra });
  openedStores.push(s);
  return s;
}

// No skip when the server is missing: this test, and every other one, fails.
it('PostgreSQL is reachable at DATABASE_URL', async () => {
  const { rows } = await admin.query<{ ok: number }>('SELECT 1 AS ok');
  expect(rows).toEqual([{ ok: 1 }]);
});

describeStoreConformance('postgres', () => openBackend());
describeQueueConformance('postgres', () => openBackend());
describeLeaseConformance('postgres', (o) => openBackend(o ?? {}), { endsLeasesAtClaim: false });

describe('postgres: schema', () => {
  it('migrates once when several instances start together, and refuses an unknown (newer) schema', async () => {
    const all = await Promise.all(Array.from({ length: 5 }, () => openStores()));
    expect(all).toHaveLength(5);
    const { rows } = await admin.query(`SELECT version, name FROM "${schema}".schema_migrations ORDER BY version`);
    expect(rows).toEqual(migrations.map((m) => ({ version: m.version, name: m.name })));
    await admin.query(`INSERT INTO "${schema}".schema_migrations (version, name) VALUES (999, 'future')`);
    // Not a 503 (an outage to wait out): a configuration to change, said as such.
    const err = await openPostgresStores({ connectionString: DATABASE_URL, schema, logger: quietLogger }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(HookdError);
    expect((err as Error).message).toBe(
      `schema ${schema} was upgraded by a newer hookd: its schema version 999 (future) is unknown to this build, which knows versions up to ${migrations.length}. ` +
        'Start that hookd (or a later one) on it; to go back to this build, restore the copy of the database taken before the upgrade',
    );
  });

  it('upgrades a schema step by step: 0002 indexes the attachments of requests stored under 0001', async () => {
    const db = new PgDatabase({ connectionString: DATABASE_URL, schema, logger: quietLogger });
    try {
      expect(await migrate(db, migrations.slice(0, 1))).toEqual([1]);
    } finally {
      await db.close();
    }
    await admin.query(
      `INSERT INTO "${schema}".requests (id, flow_id, received_at, method, path, query, headers, raw_body, client_ip, attachments)
       VALUES ('old-1', 'f', 1, 'POST', '""', '{}', '{}', '\\x00', '::1', '[{"id":"f-1"},{"id":"f-2"}]')`,
    );
    const s = await openStores();
    expect(await s.requests.referencesAttachment('f-2')).toBe(true);
    expect((await s.requests.get('old-1'))!.rawBody).toEqual(Buffer.from([0]));
  });

  it('a schema migrated by the first text of migration 6 (builds of December 5, 07:37 to 09:09) ends with the indexes of a new one', async () => {
    // That text rebuilt the retention index under its old name; the one shipped since builds
    // requests_received_at_id (IF NOT EXISTS, so that it can be made CONCURRENTLY beforehand).
    const FIRST_0006 = `
      DROP INDEX requests_flow_id;
      CREATE INDEX requests_flow_received ON requests (flow_id, received_at, id);
      DROP INDEX requests_received_at;
      CREATE INDEX requests_received_at ON requests (received_at, id);`;
    const db = new PgDatabase({ connectionString: DATABASE_URL, schema, logger: quietLogger });
    try {
      await migrate(db, [...migrations.slice(0, 5), { version: 6, name: 'request_order', sql: FIRST_0006 }]);
      await migrate(db);
    } finally {
      await db.close();
    }
    const { rows } = await admin.query<{ indexname: string; indexdef: string }>(
      `SELECT indexname, regexp_replace(indexdef, '.* USING ', '') AS indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'requests' ORDER BY indexname`,
      [schema],
    );
    expect(rows).toEqual([
      { indexname: 'requests_flow_received', indexdef: 'btree (flow_id, received_at, id)' },
      { indexname: 'requests_pkey', indexdef: 'btree (id)' },
      { indexname: 'requests_received_at_id', indexdef: 'btree (received_at, id)' },
    ]);
  });

  it('orders ids bytewise (keyset pagination), whatever the database collation', async () => {
    const b = await openBackend();
    const ids = ['A', 'a-b', 'a_c', 'b', 'a.b'];
    // Received in the same millisecond: the list falls back to the ids' order.
    const receivedAt = Date.now();
    for (const id of ids) await b.requests.accept(makeMessage({ id, receivedAt }), { maxAttempts: 1 });
    const listed = (await b.requests.list({ limit: 10 })).map((m) => m.id);
    expect(listed).toEqual([...ids].sort().reverse()); // JS sort is by UTF-16 unit: bytewise for ASCII
    expect((await b.requests.list({ limit: 10, before: 'a_c' })).map((m) => m.id)).toEqual(['a.b', 'a-b', 'A']);
  });

  it('fails to open with 503 when PostgreSQL cannot be reached', async () => {
    const url = new URL(DATABASE_URL);
    url.host = '127.0.0.1:1';
    const err = await rejection(openPostgresStores({ connectionString: url.toString(), schema, logger: quietLogger }));
    expect(err.statusCode).toBe(503);
    expect(err.retryAfter).toBeGreaterThan(0);
  });
});

describe('postgres: flow deletion records', () => {
  it('a put() racing a delete() of the same flow clears the record the delete committed while the put waited', async () => {
    const b = await openBackend();
    const t0 = new Date('2024-01-02T03:04:05.678Z');
    const { normalizeFlow } = await import('../../src/core/flow.js');
    const flow = normalizeFlow({}, 'raced', t0);
    await b.flows.put(flow);
    // A delete() in flight: its transaction holds the flow row and has written the record.
    const other = await admin.connect();
    try {
      await other.query('BEGIN');
      await other.query(`DELETE FROM "${schema}".flows WHERE id = 'raced'`);
      await other.query(`INSERT INTO "${schema}".flow_deletions (flow_id, deleted_at) VALUES ('raced', 1)`);
      let putDone = false;
      const putting = b.flows.put(flow).then(() => {
        putDone = true;
      });
      await sleep(200);
      expect(putDone).toBe(false); // the insert waits for the delete's row lock
      await other.query('COMMIT');
      await putting;
    } finally {
      other.release();
    }
    // The put came last: the flow exists and is not deleted (a statement whose snapshot predates
    // the delete's commit would have left the record behind).
    expect(await b.flows.get('raced')).toEqual(flow);
    expect(await b.flows.deletions()).toEqual([]);
  });
});

describe('postgres: instance registry', () => {
  it('counts the live instances, forgets one that left at once and one that stopped beating once it expires', async () => {
    const [a, b, c] = [await openStores(), await openStores(), await openStores()];
    const live = async (s: PostgresStores, expireMs: number) => (await s.instances.beat(expireMs)).live;
    expect(await live(a, 60_000)).toBe(1);
    expect(await live(b, 60_000)).toBe(2);
    expect(await live(c, 60_000)).toBe(3);
    expect(await live(a, 60_000)).toBe(3);
    // b runs no flows (WORKER_CONCURRENCY=0): counted live, not among those running flows.
    expect(await b.instances.beat(60_000, false)).toEqual({ live: 3, runningFlows: 2 });
    expect(await a.instances.beat(60_000)).toEqual({ live: 3, runningFlows: 2 });
    await b.instances.leave();
    expect(await live(a, 60_000)).toBe(2);
    // C stops beating. A, back from a pause as long (as after a database outage), cannot tell: it
    // still counts C, and drops nothing.
    await sleep(300);
    expect(await live(a, 200)).toBe(2);
    // A beats on without a break for expireMs: C, silent all along, no longer counts, its row is
    // dropped. (Beats 50 ms apart; on a loaded machine one can come late and count as a break,
    // so A beats on until it has gone through an unbroken stretch, within 3 s.)
    let count = 2;
    for (const until = Date.now() + 3_000; count !== 1 && Date.now() < until; ) {
      await sleep(50);
      count = await live(a, 200);
    }
    expect(count).toBe(1);
    const { rows } = await admin.query(`SELECT count(*)::integer AS n FROM "${schema}".instances`);
    expect(rows[0].n).toBe(1);
    expect(await live(c, 200)).toBe(2); // back: counted again
  });

  it('judges others gone only once its own beats went through without a break for the expiry (not right after an outage, a failed beat or a stall)', async () => {
    const a = await openStores();
    const ms = 400;
    expect(a.instances.steadyFor(ms)).toBe(false); // never beat
    await a.instances.beat(ms);
    expect(a.instances.steadyFor(ms)).toBe(false); // too short
    for (let i = 0; i < 6; i++) {
      await sleep(100);
      await a.instances.beat(ms);
    }
    expect(a.instances.steadyFor(ms)).toBe(true);
    // A stall: no beat for more than half the expiry.
    await sleep(250);
    expect(a.instances.steadyFor(ms)).toBe(false);
    await a.instances.beat(ms);
    expect(a.instances.steadyFor(ms)).toBe(false); // counting again from this beat
    for (let i = 0; i < 6; i++) {
      await sleep(100);
      await a.instances.beat(ms);
    }
    expect(a.instances.steadyFor(ms)).toBe(true);
    // A failed beat (the database unreachable): not steady until a whole expiry of beats again.
    await admin.query(`ALTER TABLE "${schema}".instances RENAME TO instances_away`);
    try {
      await expect(a.instances.beat(ms)).rejects.toThrow();
    } finally {
      await admin.query(`ALTER TABLE "${schema}".instances_away RENAME TO instances`);
    }
    expect(a.instances.steadyFor(ms)).toBe(false);
    await a.instances.beat(ms);
    expect(a.instances.steadyFor(ms)).toBe(false);
  });
});

describe('postgres: flow owners (limited flows with RabbitMQ)', () => {
  it('one instance holds a flow at a time: renewed by its holder, given up when no longer asked for or released, taken over once its lease ran out', async () => {
    const s = await openStores();
    // A share larger than any count here: one at a time, as if every instance could hold them all.
    const held = async (o: PgFlowOwners, ids: string[]) => [...(await o.hold(ids, 1_000)).held].sort();
    const a = new PgFlowOwners(s.db, 60_000);
    const b = new PgFlowOwners(s.db, 60_000);
    expect(await held(a, ['f', 'g'])).toEqual(['f', 'g']);
    expect(await held(b, ['f', 'h'])).toEqual(['h']);
    // Renewed by a; b still gets nothing of a's.
    expect(await held(a, ['f', 'g'])).toEqual(['f', 'g']);
    expect(await held(b, ['f', 'g', 'h'])).toEqual(['h']);
    // a asks for g alone: f is given up, and b takes it.
    expect(await held(a, ['g'])).toEqual(['g']);
    expect(await held(b, ['f', 'g', 'h'])).toEqual(['f', 'h']);
    // Released (shutdown): b takes g at its next hold.
    await a.releaseAll();
    expect(await held(b, ['f', 'g', 'h'])).toEqual(['f', 'g', 'h']);
    // A holder that stopped renewing (it died): its flows go to the next once its lease ran out.
    const short = new PgFlowOwners(s.db, 150);
    expect(await held(short, ['x'])).toEqual(['x']);
    expect(await held(b, ['x'])).toEqual([]);
    await sleep(250);
    expect(await held(b, ['x'])).toEqual(['x']);
    expect(await held(short, ['x'])).toEqual([]);
    // A row whose hold lapsed long ago (a deleted flow whose holder died) is removed by anyone's hold.
    await admin.query(`INSERT INTO "${schema}".flow_owners (flow_id, owner, lease_until) VALUES ('gone', 'owner-dead', 0)`);
    await held(b, ['f', 'g', 'h', 'x']);
    expect((await admin.query(`SELECT 1 FROM "${schema}".flow_owners WHERE flow_id = 'gone'`)).rowCount).toBe(0);
    // Nothing asked for: everything given up.
    expect(await held(b, [])).toEqual([]);
    expect(await held(a, ['f', 'g', 'h', 'x'])).toEqual(['f', 'g', 'h', 'x']);
  });

  it('each instance takes free flows up to its share (the flows over the instances holding, rounded up), renews what it holds beyond it, and counts only live holders', async () => {
    const s = await openStores();
    const flows = ['f1', 'f2', 'f3', 'f4', 'f5', 'f6'];
    const hold = async (o: PgFlowOwners, ids: string[]) => {
      const r = await o.hold(ids, flows.length);
      return { held: [...r.held].sort(), holders: r.holders };
    };
    const a = new PgFlowOwners(s.db, 60_000);
    const b = new PgFlowOwners(s.db, 60_000);
    const c = new PgFlowOwners(s.db, 60_000);
    // Alone: all of them.
    expect(await hold(a, flows)).toEqual({ held: flows, holders: 1 });
    // b joins: its share is 3, but every flow is held; a keeps renewing its 6 until it gives some up.
    expect(await hold(b, flows)).toEqual({ held: [], holders: 2 });
    expect(await hold(a, flows)).toEqual({ held: flows, holders: 2 });
    expect(await hold(a, ['f1', 'f2', 'f3'])).toEqual({ held: ['f1', 'f2', 'f3'], holders: 2 });
    expect(await hold(b, flows)).toEqual({ held: ['f4', 'f5', 'f6'], holders: 2 });
    // Balanced: neither takes more, asking for every flow.
    expect(await hold(a, flows)).toEqual({ held: ['f1', 'f2', 'f3'], holders: 2 });
    // c joins (share 2): nothing free; a gives one up, and c takes only that one.
    expect(await hold(c, flows)).toEqual({ held: [], holders: 3 });
    expect((await hold(a, ['f1', 'f2'])).held).toEqual(['f1', 'f2']);
    expect(await hold(c, flows)).toEqual({ held: ['f3'], holders: 3 });
    // a stops: its holder row goes too, so the share of the two left is 3 again and c takes a's two.
    await a.releaseAll();
    expect(await hold(c, flows)).toEqual({ held: ['f1', 'f2', 'f3'], holders: 2 });
    // A holder whose lease ran out (it died) is not counted: b's share is all of them again.
    const short = new PgFlowOwners(s.db, 150);
    expect((await hold(short, ['g'])).holders).toBe(3);
    await sleep(250);
    expect((await hold(b, flows)).holders).toBe(2); // b and c: short's lease ran out
    await c.releaseAll();
    expect(await hold(b, flows)).toEqual({ held: flows, holders: 1 });
  });

  it('instances asking at once never hold a flow twice, and together hold them all', async () => {
    const s = await openStores();
    const flows = Array.from({ length: 12 }, (_, i) => `r${i}`);
    const owners = Array.from({ length: 4 }, () => new PgFlowOwners(s.db, 60_000));
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(owners.map((o) => o.hold(flows, flows.length)));
      const all = results.flatMap((r) => [...r.held]);
      expect(new Set(all).size).toBe(all.length);
      if (round === 2) expect(all.sort()).toEqual([...flows].sort());
    }
  });
});

describe('postgres: shared settings', () => {
  it('the first value stored for a key wins, also when instances race', async () => {
    const [a, b] = [await openStores(), await openStores()];
    const raced = await Promise.all(['v1', 'v2', 'v3', 'v4'].map((v, i) => (i % 2 ? a : b).settings.getOrSet('k', v)));
    expect(new Set(raced).size).toBe(1);
    expect(await a.settings.getOrSet('k', 'later')).toBe(raced[0]);
    expect(await b.settings.getOrSet('other', 'x')).toBe('x');
  });
});

describe('postgres: requests', () => {
  it('stores U+0000 in the path, query, headers and body exactly', async () => {
    const b = await openBackend();
    const msg = makeMessage({
      path: '/a\u0000b',
      query: { q: 'x\u0000y' },
      headers: { 'x-h': 'v' },
      contentType: 'text/plain',
      body: 'nul:\u0000 end',
      rawBody: Buffer.from('nul:\u0000 end'),
    });
    await b.requests.accept(msg, { maxAttempts: 1 });
    expect(await b.requests.get(msg.id)).toEqual(msg);
  });

  it('stores the raw-body attachment and CloudEvents, and indexes attachment references', async () => {
    const b = await openBackend();
    const ref = (id: string) => ({ id, contentType: 'application/pdf', size: 3, sha256: 'cd'.repeat(32) });
    const msg = makeMessage({
      contentType: 'multipart/form-data; boundary=x',
      body: { field: 'v' },
      rawBody: Buffer.alloc(0),
      attachments: [ref('att-1'), { ...ref('att-2'), field: 'f', filename: 'b.pdf' }],
      rawAttachment: ref('att-raw'),
      cloudEvent: { specversion: '1.0', id: 'e1', source: '/s', type: 't', extensions: { x: 1 }, data: { a: [1] } },
      cloudEvents: [{ specversion: '1.0', id: 'e2', source: '/s', type: 't', data_base64: 'AAE=' }],
    });
    await b.requests.accept(msg, { maxAttempts: 1 });
    expect(await b.requests.get(msg.id)).toEqual(msg);
    for (const id of ['att-1', 'att-2', 'att-raw']) expect(await b.requests.referencesAttachment(id)).toBe(true);
    expect(await b.requests.referencesAttachment('att-unknown')).toBe(false);
    // A duplicate adds nothing; the references stay with the stored request.
    expect((await b.requests.accept(msg, { maxAttempts: 1 })).kind).toBe('duplicate');
    const { rows } = await admin.query(`SELECT count(*)::int AS n FROM "${schema}".request_attachments`);
    expect(rows[0]).toEqual({ n: 3 });
  });

  it('purges old requests whose work is done, with executions, steps, dead jobs and references', async () => {
    const b = await openBackend();
    const old = Date.now() - 3_600_000;
    const ref = (id: string) => ({ id, contentType: 'text/plain', size: 1, sha256: 'ab'.repeat(32) });
    const done = makeMessage({ receivedAt: old, attachments: [ref('done-file')], rawAttachment: ref('done-raw') });
    const dead = makeMessage({ receivedAt: old + 1 });
    const waiting = makeMessage({ receivedAt: old + 2 }); // its job is still queued (delayed retry)
    const recent = makeMessage();
    for (const m of [done, dead, waiting, recent]) await b.requests.accept(m, { maxAttempts: 3 });
    const exec = await b.executions.begin({ requestId: done.id, flowId: done.flowId, attempt: 1, now: old });
    await b.executions.recordStep(exec.id, {
      stepId: 's1', type: 'log', status: 'completed', attempt: 1, startedAt: old, finishedAt: old + 1,
    });
    await b.executions.setStatus(exec.id, 'completed', old + 2);
    let settled = 0;
    const c = b.queue.consume(async (d) => {
      if (d.job.requestId === dead.id) await d.deadLetter('bad');
      else if (d.job.requestId === waiting.id) await d.nack({ delayMs: 60_000, error: 'later' });
      else await d.ack();
      settled++;
    }, { concurrency: 4 });
    await waitFor(() => settled === 4, 'four settled jobs');
    await c.stop({ graceMs: 1_000 });

    const first = await b.requests.purgeOlderThan(Date.now() - 60_000, 1);
    expect(first).toEqual({ requests: 1, attachmentIds: ['done-file', 'done-raw'], more: true });
    const second = await b.requests.purgeOlderThan(Date.now() - 60_000, 10);
    expect(second).toEqual({ requests: 1, attachmentIds: [], more: false });
    expect(await b.requests.get(done.id)).toBeUndefined();
    expect(await b.requests.get(dead.id)).toBeUndefined();
    expect(await b.requests.get(waiting.id)).toEqual(waiting);
    expect(await b.requests.get(recent.id)).toEqual(recent);
    expect(await b.executions.get(exec.id)).toBeUndefined();
    expect(await b.requests.referencesAttachment('done-file')).toBe(false);
    expect(await b.queue.deadLetters({ limit: 10 })).toEqual([]);
    expect(await b.queue.stats()).toEqual({ ready: 0, inFlight: 0, delayed: 1, dead: 0 });
    const { rows } = await admin.query(`SELECT count(*)::int AS n FROM "${schema}".execution_steps`);
    expect(rows[0]).toEqual({ n: 0 });
  });

  it('commits concurrent accepts in groups, one job each', async () => {
    const b = await openBackend();
    const before = { ...b.requests.counters };
    const msgs = Array.from({ length: 200 }, (_, i) => makeMessage({ flowId: `flow-${i % 3}` }));
    const outcomes = await Promise.all(msgs.map((m) => b.requests.accept(m, { maxAttempts: 2 })));
    expect(outcomes.every((o) => o.kind === 'stored')).toBe(true);
    expect(b.requests.counters.items - before.items).toBe(200);
    expect(b.requests.counters.batches - before.batches).toBeLessThanOrEqual(10);
    const { rows } = await admin.query(
      `SELECT count(*)::int AS jobs, count(DISTINCT request_id)::int AS requests FROM "${schema}".jobs`,
    );
    expect(rows[0]).toEqual({ jobs: 200, requests: 200 });
    // Batch statements come in padded sizes (buckets): each bucket's size and the size just past it
    // store exactly their rows.
    const sizes = new Set(BUCKETS.filter((n) => n <= 130).flatMap((n) => [n, n + 1]));
    for (const n of sizes) {
      const wave = Array.from({ length: n }, () => makeMessage({ flowId: `wave-${n}` }));
      await Promise.all(wave.map((m) => b.requests.accept(m, { maxAttempts: 1 })));
      expect((await b.requests.list({ flowId: `wave-${n}`, limit: 1000 })).map((m) => m.id).sort()).toEqual(
        wave.map((m) => m.id).sort(),
      );
    }
  });

  it('records requests that jobs carried (RABBITMQ_ACCEPT=broker): once, without a job; a redelivery is the same request, a sender\'s retry a duplicate', async () => {
    const b = await openBackend();
    const first = makeMessage({ id: 'carried-1', flowId: 'orders', receivedAt: 1_764_900_000_000.375 });
    const many = Array.from({ length: 50 }, (_, i) => makeMessage({ id: `carried-many-${i}`, flowId: 'orders' }));
    const outcomes = await Promise.all([first, ...many].map((m) => b.requests.recordCarried!(m)));
    expect(outcomes.map((o) => o.kind)).toEqual(Array(51).fill('recorded'));
    expect(await b.requests.get('carried-1')).toEqual(first);
    // No job: the job is the one being handled.
    const { rows } = await admin.query(`SELECT count(*)::int AS n FROM "${schema}".jobs`);
    expect(rows[0]).toEqual({ n: 0 });
    // The same job delivered again (its worker died before the ack): the same request, to run.
    expect(await b.requests.recordCarried!(first)).toEqual({ kind: 'recorded', message: first });
    // A sender's retry with the same x-request-id (each copy answered by the broker): not run again.
    const retry = makeMessage({ id: 'carried-1', flowId: 'orders', receivedAt: first.receivedAt + 1_000 });
    expect(await b.requests.recordCarried!(retry)).toEqual({ kind: 'duplicate', requestId: 'carried-1' });
    expect(await b.requests.get('carried-1')).toEqual(first);
    // An id another flow's request has: the flow's own id for it, as the ingress gives.
    const elsewhere = makeMessage({ id: 'carried-1', flowId: 'invoices' });
    const scoped = await b.requests.recordCarried!(elsewhere);
    expect(scoped.kind).toBe('recorded');
    const scopedId = scoped.kind === 'recorded' ? scoped.message.id : '';
    expect(scopedId).toMatch(/^rid-[A-Za-z0-9_-]{32}$/);
    expect(await b.requests.get(scopedId)).toEqual({ ...elsewhere, id: scopedId });
    expect(await b.requests.recordCarried!(elsewhere)).toEqual({ kind: 'recorded', message: { ...elsewhere, id: scopedId } });
    // A request the ingress accepted (the outbox way) and a carried copy of it: a duplicate.
    const accepted = makeMessage({ flowId: 'orders' });
    await b.requests.accept(accepted, { maxAttempts: 1 });
    expect((await b.requests.recordCarried!({ ...accepted, receivedAt: accepted.receivedAt + 5 })).kind).toBe('duplicate');
  });

  it('tells a redelivery from a sender\'s retry by the exact time of receipt, also where PostgreSQL rounds floats in its output (extra_float_digits=0)', async () => {
    // Servers before PostgreSQL 12 (and any database, role or pooler that sets it) print float8
    // with 15 digits: a time of receipt read back as text no longer equals the carried one.
    const rounding = await openBackend({ connectionString: `${DATABASE_URL}${DATABASE_URL.includes('?') ? '&' : '?'}options=-c%20extra_float_digits%3D0` });
    const m = makeMessage({ id: 'carried-round', flowId: 'orders', receivedAt: 1_764_900_008_162.0955 });
    expect((await rounding.requests.recordCarried!(m)).kind).toBe('recorded');
    expect(await rounding.requests.recordCarried!(m)).toEqual({ kind: 'recorded', message: m });
    expect((await rounding.requests.recordCarried!({ ...m, receivedAt: m.receivedAt + 0.01 })).kind).toBe('duplicate');
    // The same, when the first copy commits while the second waits for it (a concurrent statement).
    const n = makeMessage({ id: 'carried-round-2', flowId: 'orders', receivedAt: 1_764_900_008_163.0955 });
    const both = await Promise.all([rounding.requests.recordCarried!(n), (await openBackend({ connectionString: `${DATABASE_URL}${DATABASE_URL.includes('?') ? '&' : '?'}options=-c%20extra_float_digits%3D0` })).requests.recordCarried!(n)]);
    expect(both.map((o) => o.kind)).toEqual(['recorded', 'recorded']);
  });

  it('a carried request is refused with 503 once the store is closed', async () => {
    const b = await openBackend();
    await b.close();
    await expect(b.requests.recordCarried!(makeMessage())).rejects.toMatchObject({ statusCode: 503 });
  });

  it('pads a batch by at most 25 % (and at most to MAX_BATCH_ROWS)', () => {
    for (let n = 1; n <= 512; n++) {
      const b = bucket(n);
      expect(b).toBeGreaterThanOrEqual(n);
      expect(b).toBeLessThanOrEqual(Math.max(n + 1, Math.ceil(n * 1.25)));
    }
    expect(() => bucket(513)).toThrow();
  });

  it('resolves duplicates and conflicts within and across batches', async () => {
    const b = await openBackend();
    const m = makeMessage({ id: 'same-id', flowId: 'flow-a' });
    const results = await Promise.allSettled([
      b.requests.accept(m, { maxAttempts: 1 }),
      b.requests.accept(m, { maxAttempts: 1 }),
      b.requests.accept({ ...m, flowId: 'flow-b' }, { maxAttempts: 1 }),
    ]);
    expect(results[0]).toMatchObject({ status: 'fulfilled', value: { kind: 'stored' } });
    expect(results[1]).toMatchObject({ status: 'fulfilled', value: { kind: 'duplicate' } });
    expect(results[2]).toMatchObject({ status: 'rejected', reason: { code: 'REQUEST_ID_CONFLICT' } });
    expect(await b.queue.stats()).toMatchObject({ ready: 1 });
  });

  it('isolates a row that fails inside a group commit: the rest of the batch is stored', async () => {
    const b = await openBackend();
    const ok1 = makeMessage();
    const ok2 = makeMessage();
    // A text column refuses U+0000 (the ingress never produces it in a header): a statement error.
    const bad = makeMessage({ contentType: 'text/\u0000' });
    const before = b.requests.counters.batches;
    const results = await Promise.allSettled([
      b.requests.accept(ok1, { maxAttempts: 1 }),
      b.requests.accept(bad, { maxAttempts: 1 }),
      b.requests.accept(ok2, { maxAttempts: 1 }),
    ]);
    expect(b.requests.counters.batches - before).toBe(1);
    expect(results[0]).toMatchObject({ status: 'fulfilled', value: { kind: 'stored' } });
    expect(results[1]).toMatchObject({ status: 'rejected', reason: { code: 'INTERNAL', statusCode: 500 } });
    expect(results[2]).toMatchObject({ status: 'fulfilled', value: { kind: 'stored' } });
    expect(await b.requests.get(ok1.id)).toEqual(ok1);
    expect(await b.requests.get(ok2.id)).toEqual(ok2);
    expect(await b.requests.get(bad.id)).toBeUndefined();
    expect(await b.queue.stats()).toMatchObject({ ready: 2 });
  });

  it('answers 503 while PostgreSQL is unreachable, and recovers without a restart', async () => {
    const proxy = await TcpProxy.start(new URL(DATABASE_URL));
    try {
      const b = await openBackend({ connectionString: proxy.url, connectTimeoutMs: 1_000 });
      expect((await b.requests.accept(makeMessage(), { maxAttempts: 1 })).kind).toBe('stored');
      await proxy.cut();
      const lost = makeMessage();
      const err = await rejection(b.requests.accept(lost, { maxAttempts: 1 }));
      expect(err.statusCode).toBe(503);
      expect(err.code).toBe('STORE_UNAVAILABLE');
      expect(err.retryAfter).toBeGreaterThan(0);
      expect((await rejection(b.checkWritable())).statusCode).toBe(503);
      expect((await rejection(b.requests.get(lost.id))).statusCode).toBe(503);
      await proxy.restore();
      expect(await b.requests.accept(lost, { maxAttempts: 1 })).toEqual({ kind: 'stored' });
      await b.checkWritable();
      expect(await b.requests.get(lost.id)).toEqual(lost);
    } finally {
      await proxy.close();
    }
  });

  it('turns a statement stuck behind a lock into 503 (statement_timeout)', async () => {
    const b = await openBackend({ statementTimeoutMs: 200 });
    const locker = await admin.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${schema}".requests IN ACCESS EXCLUSIVE MODE`);
      const t0 = Date.now();
      const err = await rejection(b.requests.accept(makeMessage(), { maxAttempts: 1 }));
      expect(err.statusCode).toBe(503);
      expect(err.message).toMatch(/57014|statement timeout/);
      expect(Date.now() - t0).toBeLessThan(3_000);
      await locker.query('ROLLBACK');
      expect((await b.requests.accept(makeMessage(), { maxAttempts: 1 })).kind).toBe('stored');
    } finally {
      locker.release();
    }
  });
});

describe('postgres: executions', () => {
  const step = (stepId: string, extra: Partial<StepRecord> = {}): StepRecord => ({
    stepId,
    type: 'transform',
    status: 'completed',
    attempt: 1,
    startedAt: 1_700_000_000_000.5,
    finishedAt: 1_700_000_000_001.75,
    input: '{"a":"quote \\" and \\\\ backslash, {braces}"}',
    output: '{"b":2}',
    ...extra,
  });

  it('saveRun records a run in one write, replaces an unfinished one, leaves a finished one alone', async () => {
    const b = await openBackend();
    const requestId = uuidv7();
    const id = await b.executions.saveRun({
      requestId,
      flowId: 'flow-r',
      attempt: 1,
      startedAt: 100.5,
      finishedAt: 102.25,
      queueDelayMs: 0.75,
      status: 'completed',
      steps: [step('s1'), step('s2', { output: undefined, error: 'e' })],
    });
    expect(await b.executions.get(id)).toEqual({
      id,
      requestId,
      flowId: 'flow-r',
      status: 'completed',
      attempts: 1,
      createdAt: 100.5,
      updatedAt: 102.25,
      finishedAt: 102.25,
      queueDelayMs: 0.75,
      steps: [step('s1'), step('s2', { output: undefined, error: 'e' })],
    });
    // Finished: a second save changes nothing and returns the same id.
    const again = await b.executions.saveRun({
      requestId, flowId: 'flow-r', attempt: 2, startedAt: 200, finishedAt: 201, status: 'filtered', steps: [],
    });
    expect(again).toBe(id);
    expect((await b.executions.get(id))!.steps).toHaveLength(2);

    // Unfinished (retrying with steps): replaced, steps renumbered from 1.
    const other = uuidv7();
    const begun = await b.executions.begin({ requestId: other, flowId: 'flow-r', attempt: 1, now: 10 });
    await b.executions.recordStep(begun.id, step('old-1'));
    await b.executions.recordStep(begun.id, step('old-2'));
    await b.executions.setStatus(begun.id, 'retrying', 11, 'boom');
    const replaced = await b.executions.saveRun({
      requestId: other, flowId: 'flow-r', attempt: 2, startedAt: 20, finishedAt: 21, status: 'completed',
      steps: [step('new-1', { attempt: 2 })],
    });
    expect(replaced).toBe(begun.id);
    const got = await b.executions.get(begun.id);
    expect(got).toMatchObject({ status: 'completed', attempts: 2, createdAt: 10, finishedAt: 21 });
    expect(got!.error).toBeUndefined();
    expect(got!.steps).toEqual([step('new-1', { attempt: 2 })]);
    // Finished: a later step (a delivery that lost its lease) is not appended.
    await b.executions.recordStep(begun.id, step('after'));
    expect((await b.executions.get(begun.id))!.steps.map((s) => s.stepId)).toEqual(['new-1']);
  });

  it('concurrent whole runs share one statement; a failing one fails alone; finished ones stay', async () => {
    const b = await openBackend();
    const run = (requestId: string, i: number, extra: Partial<RunRecord> = {}): RunRecord => ({
      requestId,
      flowId: 'f',
      attempt: 1,
      startedAt: 10,
      finishedAt: 20 + i,
      queueDelayMs: i,
      status: 'completed',
      steps: [step(`a${i}`), step(`b${i}`)],
      ...extra,
    });
    // One already completed (left as it was), one begun earlier with a step (its steps replaced).
    const done = uuidv7();
    const doneId = await b.executions.saveRun(run(done, 99));
    const begun = await b.executions.begin({ requestId: uuidv7(), flowId: 'f', attempt: 1, now: 1 });
    await b.executions.recordStep(begun.id, step('old'));
    const ids = [done, begun.requestId, ...Array.from({ length: 10 }, () => uuidv7())];
    const before = { ...b.executions.runCounters };
    const results = await Promise.allSettled(
      ids.map((id, i) => b.executions.saveRun(run(id, i, i === 5 ? { error: 'NUL \u0000 is refused', status: 'dead' } : {}))),
    );
    expect(b.executions.runCounters.items - before.items).toBe(12);
    expect(b.executions.runCounters.batches - before.batches).toBeLessThan(12);
    results.forEach((r, i) => {
      if (i === 5) expect(r).toMatchObject({ status: 'rejected', reason: { statusCode: 500 } });
      else expect(r.status).toBe('fulfilled');
    });
    expect(results[0]).toEqual({ status: 'fulfilled', value: doneId });
    expect(results[1]).toEqual({ status: 'fulfilled', value: begun.id });
    const kept = (await b.executions.get(doneId))!;
    expect(kept.steps.map((s) => s.stepId)).toEqual(['a99', 'b99']);
    expect(kept.finishedAt).toBe(119);
    for (const [i, r] of results.entries()) {
      if (i === 0 || i === 5 || r.status !== 'fulfilled') continue;
      const e = (await b.executions.get(r.value))!;
      expect(e).toMatchObject({ requestId: ids[i], status: 'completed', finishedAt: 20 + i });
      expect(e.steps.map((s) => s.stepId)).toEqual([`a${i}`, `b${i}`]);
    }
    expect(await b.executions.list({ flowId: 'f', limit: 100 }).then((l) => l.some((e) => e.requestId === ids[5]))).toBe(false);
  });

  it('concurrent execution writes share a commit; a failing one fails alone', async () => {
    const b = await openBackend();
    const runs = await Promise.all(
      Array.from({ length: 12 }, () => b.executions.begin({ requestId: uuidv7(), flowId: 'f', attempt: 1, now: 1 })),
    );
    const before = { ...b.executions.counters };
    const results = await Promise.allSettled(
      runs.map((e, i) => b.executions.recordStep(e.id, step(`s${i}`, i === 5 ? { error: 'NUL \u0000 is refused' } : {}))),
    );
    expect(b.executions.counters.items - before.items).toBe(12);
    expect(b.executions.counters.batches - before.batches).toBeLessThan(12);
    results.forEach((r, i) => {
      if (i === 5) expect(r).toMatchObject({ status: 'rejected', reason: { statusCode: 500 } });
      else expect(r.status).toBe('fulfilled');
    });
    for (const [i, e] of runs.entries()) {
      expect((await b.executions.get(e.id))!.steps.map((s) => s.stepId)).toEqual(i === 5 ? [] : [`s${i}`]);
    }
  });

  it('concurrent begins share one execution; concurrent recordStep calls never collide', async () => {
    const b = await openBackend();
    const requestId = uuidv7();
    const begun = await Promise.all(
      Array.from({ length: 8 }, (_, i) => b.executions.begin({ requestId, flowId: 'f', attempt: i + 1, now: i })),
    );
    expect(new Set(begun.map((e) => e.id)).size).toBe(1);
    const id = begun[0]!.id;
    await Promise.all(Array.from({ length: 20 }, (_, i) => b.executions.recordStep(id, step(`s${i}`))));
    const { rows } = await admin.query(
      `SELECT seq FROM "${schema}".execution_steps WHERE execution_id = $1 ORDER BY seq`,
      [id],
    );
    expect(rows.map((r: { seq: number }) => r.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(await rejection(b.executions.recordStep('nope', step('x')))).toMatchObject({ statusCode: 404 });
  });
});

describe('postgres: transactional outbox', () => {
  const outboxRows = async (): Promise<Array<{ request_id: string; flow_id: string; max_attempts: number }>> =>
    (await admin.query(`SELECT request_id, flow_id, max_attempts FROM "${schema}".outbox ORDER BY request_id`)).rows;

  it('accept writes one outbox row per stored request (no queue job), none for duplicates or conflicts', async () => {
    const s = await openStores({ dispatch: 'outbox' });
    const a = makeMessage({ flowId: 'flow-o' });
    const c = makeMessage({ flowId: 'flow-o' });
    await s.requests.accept(a, { maxAttempts: 4 });
    await s.requests.accept(c, { maxAttempts: 2 });
    expect(await s.requests.accept(a, { maxAttempts: 4 })).toEqual({ kind: 'duplicate' });
    await rejection(s.requests.accept({ ...a, flowId: 'flow-x' }, { maxAttempts: 4 }));
    expect(await outboxRows()).toEqual(
      [
        { request_id: a.id, flow_id: 'flow-o', max_attempts: 4 },
        { request_id: c.id, flow_id: 'flow-o', max_attempts: 2 },
      ].sort((x, y) => (x.request_id < y.request_id ? -1 : 1)),
    );
    expect((await admin.query(`SELECT count(*)::int AS n FROM "${schema}".jobs`)).rows[0]).toEqual({ n: 0 });
    expect(await s.outbox.backlog()).toBe(2);
  });

  it('claimOutbox leases rows (disjoint between relays), markPublished deletes, release and expiry return them', async () => {
    const s1 = await openStores({ dispatch: 'outbox' });
    const s2 = await openStores({ dispatch: 'outbox' }); // a second instance
    const ids = [];
    for (let i = 0; i < 10; i++) {
      const m = makeMessage();
      await s1.requests.accept(m, { maxAttempts: 3 });
      ids.push(m.id);
    }
    const [c1, c2] = await Promise.all([s1.outbox.claimOutbox(6), s2.outbox.claimOutbox(6)]);
    expect(c1.length + c2.length).toBe(10);
    const claimedIds = [...c1, ...c2].map((j) => j.requestId).sort();
    expect(claimedIds).toEqual([...ids].sort());
    const job: OutboxJob = c1[0]!;
    expect(job).toMatchObject({ maxAttempts: 3, claims: 1, flowId: 'flow-a' });
    expect(job.enqueuedAt).toBeGreaterThan(Date.now() - 60_000);
    // Leased: nothing to claim.
    expect(await s1.outbox.claimOutbox(100)).toEqual([]);

    expect(await s1.outbox.markPublished(c1.map((j) => j.id))).toBe(c1.length);
    expect(await s2.outbox.releaseOutbox(c2.slice(0, 2).map((j) => j.id))).toBe(2);
    const back = await s1.outbox.claimOutbox(100);
    expect(back.map((j) => j.id).sort()).toEqual(c2.slice(0, 2).map((j) => j.id).sort());
    expect(back.every((j) => j.claims === 2)).toBe(true);

    // A short lease runs out: the rows come back (the relay that held them is presumed dead).
    const rest = c2.slice(2).map((j) => j.id);
    await s1.outbox.markPublished(back.map((j) => j.id));
    await admin.query(`UPDATE "${schema}".outbox SET available_at = 0`); // expire the remaining leases
    const expired = await s2.outbox.claimOutbox(100, 50);
    expect(expired.map((j) => j.id).sort()).toEqual([...rest].sort());
    await sleep(80);
    expect((await s1.outbox.claimOutbox(100)).map((j) => j.id).sort()).toEqual([...rest].sort());
    expect(await s1.outbox.backlog()).toBe(rest.length);
  });

  it('the relay publishes every committed job, retries a failed publish, and wakes on local commits', async () => {
    const s = await openStores({ dispatch: 'outbox' });
    const published: OutboxJob[] = [];
    let calls = 0;
    const relay = startOutboxRelay({
      outbox: s.outbox,
      pollMs: 60_000, // only local commits (and retries) can wake it within the test
      retryDelayMs: 100,
      batchSize: 16,
      logger: quietLogger,
      publish: async (jobs) => {
        calls++;
        if (calls === 2) throw new Error('broker unavailable');
        published.push(...jobs);
      },
    });
    try {
      const first = makeMessage();
      const t0 = Date.now();
      await s.requests.accept(first, { maxAttempts: 5 });
      await waitFor(() => published.length === 1, 'the first publish');
      expect(Date.now() - t0).toBeLessThan(1_000);
      expect(published[0]).toMatchObject({ requestId: first.id, maxAttempts: 5 });

      const ids = (
        await Promise.all(
          Array.from({ length: 50 }, async () => {
            const m = makeMessage();
            await s.requests.accept(m, { maxAttempts: 5 });
            return m.id;
          }),
        )
      ).concat(first.id);
      await waitFor(() => new Set(published.map((j) => j.requestId)).size === 51, 'all jobs published', 10_000);
      expect(new Set(published.map((j) => j.requestId))).toEqual(new Set(ids));
      expect(relay.counters.failures).toBe(1);
      await waitFor(() => relay.counters.published >= 51, 'markPublished');
      expect(await s.outbox.backlog()).toBe(0);
    } finally {
      await relay.stop();
    }
  });

  it('the relay deletes exactly the confirmed rows of a partly failed publish', async () => {
    const s = await openStores({ dispatch: 'outbox' });
    const msgs = Array.from({ length: 6 }, () => makeMessage());
    for (const m of msgs) await s.requests.accept(m, { maxAttempts: 1 });
    const unlucky = msgs[2]!.id;
    const attempts = new Map<string, number>();
    const relay = startOutboxRelay({
      outbox: s.outbox,
      retryDelayMs: 100,
      logger: quietLogger,
      publish: async (jobs) =>
        jobs.map((j): PromiseSettledResult<void> => {
          const n = (attempts.get(j.requestId) ?? 0) + 1;
          attempts.set(j.requestId, n);
          return j.requestId === unlucky && n === 1
            ? { status: 'rejected', reason: new Error('nack from broker') }
            : { status: 'fulfilled', value: undefined };
        }),
    });
    try {
      await waitFor(() => relay.counters.published === 6, 'six confirmed', 5_000);
      expect(attempts.get(unlucky)).toBe(2);
      for (const m of msgs) if (m.id !== unlucky) expect(attempts.get(m.id)).toBe(1);
      expect(relay.counters.failures).toBe(1);
      expect(await s.outbox.backlog()).toBe(0);
    } finally {
      await relay.stop();
    }
  });

  it('purge keeps requests not yet published or still running, and takes them once done', async () => {
    const s = await openStores({ dispatch: 'outbox' });
    const old = Date.now() - 3_600_000;
    const unpublished = makeMessage({ receivedAt: old });
    const running = makeMessage({ receivedAt: old + 1 });
    const finished = makeMessage({ receivedAt: old + 2 });
    for (const m of [unpublished, running, finished]) await s.requests.accept(m, { maxAttempts: 1 });
    const claimed = await s.outbox.claimOutbox(10);
    await s.outbox.markPublished(claimed.filter((j) => j.requestId !== unpublished.id).map((j) => j.id));
    const e1 = await s.executions.begin({ requestId: running.id, flowId: running.flowId, attempt: 1, now: old });
    const e2 = await s.executions.begin({ requestId: finished.id, flowId: finished.flowId, attempt: 1, now: old });
    await s.executions.setStatus(e2.id, 'completed', old + 5);
    expect(await s.requests.purgeOlderThan(Date.now(), 10)).toEqual({ requests: 1, attachmentIds: [], more: false });
    expect(await s.requests.get(finished.id)).toBeUndefined();
    expect(await s.requests.get(unpublished.id)).toBeDefined();
    await s.outbox.markPublished(claimed.map((j) => j.id));
    await s.executions.setStatus(e1.id, 'dead', old + 6, 'gave up');
    expect((await s.requests.purgeOlderThan(Date.now(), 10)).requests).toBe(2);
  });

  it('switching to the PostgreSQL queue adopts the jobs left in the outbox', async () => {
    const s = await openStores({ dispatch: 'outbox' });
    for (let i = 0; i < 3; i++) await s.requests.accept(makeMessage(), { maxAttempts: 2 });
    await s.close();
    const b = await openBackend();
    expect(await b.queue.stats()).toEqual({ ready: 3, inFlight: 0, delayed: 0, dead: 0 });
    expect(await b.stores.outbox.backlog()).toBe(0);
  });
  it('switching to RabbitMQ moves the jobs of the PostgreSQL queue into the outbox, dead ones counted', async () => {
    const b = await openBackend();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const m = makeMessage();
      ids.push(m.id);
      await b.requests.accept(m, { maxAttempts: 2 });
    }
    const buried = deferred<string>();
    const c = b.queue.consume(async (d) => {
      await d.deadLetter('given up');
      buried.resolve(d.job.requestId);
      await new Promise(() => {}); // keep the other jobs where they are
    }, { concurrency: 1 });
    const dead = await buried.promise;
    await c.stop({ graceMs: 0 });
    await b.close();

    const s = await openStores({ dispatch: 'outbox' });
    expect(await s.outbox.adoptQueueJobs()).toEqual({ moved: 2, deadLeft: 1 });
    const claimed = await s.outbox.claimOutbox(10);
    expect(claimed.map((j) => j.requestId).sort()).toEqual(ids.filter((id) => id !== dead).sort());
    expect(await s.outbox.adoptQueueJobs()).toEqual({ moved: 0, deadLeft: 1 });
  });
});

describe('postgres queue: processes, notifications', () => {
  it('wakes an idle consumer of another process through NOTIFY (well under the 1 s sweep)', async () => {
    const worker = await openBackend();
    const ingress = await openBackend();
    let waiting = deferred<number>();
    worker.queue.consume(async (d) => {
      waiting.resolve(performance.now());
      await d.ack();
    }, { concurrency: 2 });
    await sleep(200); // LISTEN is up
    const latencies: number[] = [];
    for (let i = 0; i < 15; i++) {
      waiting = deferred<number>();
      const t0 = performance.now();
      await ingress.requests.accept(makeMessage(), { maxAttempts: 1 });
      latencies.push((await waiting.promise) - t0);
    }
    expect(median(latencies)).toBeLessThan(100);
  });

  it('two processes share the jobs, each job delivered once (SKIP LOCKED)', async () => {
    const b1 = await openBackend();
    const b2 = await openBackend();
    const seen: string[] = [];
    const per = [0, 0];
    for (const [k, b] of [b1, b2].entries()) {
      b.queue.consume(async (d) => {
        per[k]!++;
        seen.push(d.job.requestId);
        await sleep(2);
        await d.ack();
      }, { concurrency: 4 });
    }
    const ids = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const m = makeMessage();
        await (i % 2 ? b1 : b2).requests.accept(m, { maxAttempts: 1 });
        return m.id;
      }),
    );
    await waitFor(() => seen.length >= 100, '100 deliveries', 10_000);
    await sleep(300);
    expect([...seen].sort()).toEqual([...ids].sort());
    expect(per[0]).toBeGreaterThan(0);
    expect(per[1]).toBeGreaterThan(0);
  });
});

/** A TCP proxy to PostgreSQL that can be cut (connections dropped, port refusing) and restored. */
class TcpProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly target: { host: string; port: number },
    private port: number,
    readonly url: string,
  ) {}

  static async start(db: URL): Promise<TcpProxy> {
    const target = { host: db.hostname, port: Number(db.port || 5432) };
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const url = new URL(db.toString());
    url.host = `127.0.0.1:${port}`;
    const proxy = new TcpProxy(target, port, url.toString());
    await proxy.restore();
    return proxy;
  }

  async restore(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.server = server;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  close(): Promise<void> {
    return this.cut();
  }
}

describe('postgres: claims with caps (limited or stopped flows)', () => {
  it('come back full while jobs are due, over many flows of one job each; a flow at 0 is never claimed; a cap holds', async () => {
    const b = await openBackend();
    const flows = Array.from({ length: 300 }, (_, i) => `f${String(i).padStart(3, '0')}`);
    for (const flowId of flows) await b.requests.accept(makeMessage({ flowId }), { maxAttempts: 3 });
    for (let i = 0; i < 5; i++) await b.requests.accept(makeMessage({ flowId: 'limited' }), { maxAttempts: 3 });
    const caps = new Map([['f000', 0], ['stopped-without-jobs', 0], ['limited', 2]]);
    const sizes: number[] = [];
    const seen: string[] = [];
    for (;;) {
      const rows = await b.queue.sql.claim('o', 128, caps);
      if (rows.length === 0) break;
      sizes.push(rows.length);
      seen.push(...rows.map((r) => r.flow_id));
      for (const r of rows) if (caps.has(r.flow_id)) caps.set(r.flow_id, caps.get(r.flow_id)! - 1);
    }
    // Short only at the end: 299 + 2 = 301 jobs in claims of 128, 128, 45.
    expect(sizes).toEqual([128, 128, 45]);
    expect(seen).not.toContain('f000');
    expect(seen.filter((f) => f === 'limited')).toHaveLength(2);
    expect(new Set(seen).size).toBe(300);
  });

  it("a flow's limit holds for every consumer together: leases other consumers hold count against it (live ones only)", async () => {
    const b = await openBackend();
    for (let i = 0; i < 6; i++) await b.requests.accept(makeMessage({ flowId: 'limited' }), { maxAttempts: 3 });
    for (let i = 0; i < 3; i++) await b.requests.accept(makeMessage({ flowId: 'free' }), { maxAttempts: 3 });
    // Each consumer's caps say what it may take by what it holds itself: 2 each, holding nothing.
    const first = await b.queue.sql.claim('one', 8, new Map([['limited', 2]]));
    expect(first.filter((r) => r.flow_id === 'limited')).toHaveLength(2);
    const second = await b.queue.sql.claim('two', 8, new Map([['limited', 2]]));
    // The limit is full with the first consumer's two: none for the second; other flows as before.
    expect(second.filter((r) => r.flow_id === 'limited')).toHaveLength(0);
    expect(second.filter((r) => r.flow_id === 'free').length + first.filter((r) => r.flow_id === 'free').length).toBe(3);
    // One of the first consumer's jobs ends: room for one.
    const done = first.find((r) => r.flow_id === 'limited')!;
    expect(await b.queue.sql.ack({ jobId: done.id, attempts: done.attempts, owner: 'one' })).toBe(true);
    expect((await b.queue.sql.claim('two', 8, new Map([['limited', 2]]))).map((r) => r.flow_id)).toEqual(['limited']);
    // 'two' holds one now (its caps say 1): none while 'one' holds the other; a lease that ran out
    // (its consumer died, the sweep has not put the job back yet) holds no room.
    expect(await b.queue.sql.claim('two', 8, new Map([['limited', 1]]))).toHaveLength(0);
    await admin.query(`UPDATE "${schema}".jobs SET lease_until = 0 WHERE lease_owner = 'one'`);
    expect((await b.queue.sql.claim('two', 8, new Map([['limited', 1]]))).map((r) => r.flow_id)).toEqual(['limited']);
  });

  it("leases of an instance that stopped beating hold no share of a flow's limit (gone after the registry's expiry, not the lease's)", async () => {
    const b = await openBackend({ instanceExpireMs: 5_000, instanceSteady: () => true });
    for (let i = 0; i < 4; i++) await b.requests.accept(makeMessage({ flowId: 'limited' }), { maxAttempts: 3 });
    const nowMs = 'extract(epoch from now()) * 1000';
    await admin.query(`INSERT INTO "${schema}".instances (id, seen_at) VALUES ('instance-live', ${nowMs}), ('instance-dead', ${nowMs} - 60000)`);
    const caps = (n: number) => new Map([['limited', n]]);
    expect(await b.queue.sql.claim('instance-live/consumer-1', 8, caps(2))).toHaveLength(2);
    expect(await b.queue.sql.claim('instance-dead/consumer-2', 8, caps(2))).toHaveLength(0);
    // The live instance gives one back; the dead one's consumer takes it (its claim is its own).
    await admin.query(`UPDATE "${schema}".jobs SET lease_owner = 'instance-dead/consumer-2' WHERE id = (SELECT id FROM "${schema}".jobs WHERE lease_owner = 'instance-live/consumer-1' LIMIT 1)`);
    // Another consumer: the live instance's lease counts, the dead instance's does not.
    expect(await b.queue.sql.claim('consumer-3', 8, caps(2))).toHaveLength(1);
    // Owners without an instance (consumer-3) count, as live instances' do: no room left.
    expect(await b.queue.sql.claim('instance-live/consumer-5', 8, caps(2))).toHaveLength(0);
  });

  it("the sweep ends the leases of an instance that stopped beating at once, not when they run out; live instances' and owners without one keep theirs", async () => {
    const b = await openBackend({ instanceExpireMs: 5_000, instanceSteady: () => true });
    for (let i = 0; i < 3; i++) await b.requests.accept(makeMessage({ flowId: 'f' }), { maxAttempts: 3 });
    const nowMs = 'extract(epoch from now()) * 1000';
    await admin.query(`INSERT INTO "${schema}".instances (id, seen_at) VALUES ('instance-live', ${nowMs}), ('instance-dead', ${nowMs} - 6000)`);
    const [live] = await b.queue.sql.claim('instance-live/c1', 1);
    const [dead] = await b.queue.sql.claim('instance-dead/c2', 1);
    const [outside] = await b.queue.sql.claim('consumer-3', 1);
    expect([live, dead, outside].every((j) => j !== undefined)).toBe(true);
    // Every lease runs for 30 s more; one of them belongs to a gone instance.
    expect((await b.queue.sql.due()).goneLeases).toBe(true);
    expect(await b.queue.sql.expireLeases()).toBe(1);
    const { rows } = await admin.query(`SELECT id, state, lease_owner FROM "${schema}".jobs ORDER BY id`);
    expect(rows.find((r) => r.id === dead!.id)).toMatchObject({ state: 'ready', lease_owner: null });
    expect(rows.filter((r) => r.state === 'leased').map((r) => r.lease_owner).sort()).toEqual(['consumer-3', 'instance-live/c1']);
    expect((await b.queue.sql.due()).goneLeases).toBe(false);
    // Its consumer's late ack finds the lease gone; the job runs again (once more, no attempt spent: it never began).
    expect(await b.queue.sql.ack({ jobId: dead!.id, attempts: dead!.attempts, owner: 'instance-dead/c2' })).toBe(false);
    const [again] = await b.queue.sql.claim('instance-live/c1', 1);
    expect(again?.id).toBe(dead!.id);
    // Without a registry (no expiry given), a lease holds until its time.
    const plain = await openBackend();
    expect((await plain.queue.sql.due()).goneLeases).toBe(false);
  });

  it("a limited flow's claim first ends the leases of a gone instance: its job runs again in its turn, before the later ones", async () => {
    const b = await openBackend({ instanceExpireMs: 5_000, instanceSteady: () => true });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const m = makeMessage({ flowId: 'serial' });
      ids.push(m.id);
      await b.requests.accept(m, { maxAttempts: 3 });
    }
    const nowMs = 'extract(epoch from now()) * 1000';
    await admin.query(`INSERT INTO "${schema}".instances (id, seen_at) VALUES ('instance-live', ${nowMs}), ('instance-dead', ${nowMs})`);
    const caps = new Map([['serial', 1]]);
    expect((await b.queue.sql.claim('instance-dead/c1', 8, caps)).map((j) => j.request_id)).toEqual([ids[0]]);
    // The holder dies (no beat for 6 s); no sweep has run since.
    await admin.query(`UPDATE "${schema}".instances SET seen_at = ${nowMs} - 6000 WHERE id = 'instance-dead'`);
    expect((await b.queue.sql.claim('instance-live/c2', 8, caps)).map((j) => j.request_id)).toEqual([ids[0]]);
  });

  it("an instance that cannot judge the registry yet (not steady: just back from an outage) ends no lease early and counts every live lease against a limit", async () => {
    let steady = false;
    const b = await openBackend({ instanceExpireMs: 5_000, instanceSteady: () => steady });
    for (let i = 0; i < 2; i++) await b.requests.accept(makeMessage({ flowId: 'limited' }), { maxAttempts: 3 });
    const nowMs = 'extract(epoch from now()) * 1000';
    // Looks gone: no beat for 6 s, as every instance does right after the database was down 6 s.
    await admin.query(`INSERT INTO "${schema}".instances (id, seen_at) VALUES ('instance-quiet', ${nowMs} - 6000), ('instance-other', ${nowMs})`);
    const caps = new Map([['limited', 1]]);
    expect(await b.queue.sql.claim('instance-quiet/c1', 8, caps)).toHaveLength(1);
    expect((await b.queue.sql.due()).goneLeases).toBe(false);
    expect(await b.queue.sql.expireLeases()).toBe(0);
    expect(await b.queue.sql.claim('instance-other/c2', 8, caps)).toHaveLength(0); // its lease still counts
    steady = true;
    expect((await b.queue.sql.due()).goneLeases).toBe(true);
    // No longer counted, and ended by the claim itself: the quiet one's job is taken first, in its turn.
    const taken = await b.queue.sql.claim('instance-other/c2', 8, caps);
    expect(taken).toHaveLength(1);
    expect((await b.queue.sql.due()).goneLeases).toBe(false);
    expect(await b.queue.sql.expireLeases()).toBe(0);
  });

  it('consumers in three processes run a flow limited to 1 one job at a time, with other flows beside it', async () => {
    const backends = [await openBackend(), await openBackend(), await openBackend()];
    const limits = new Map([['serial', 1]]);
    let running = 0;
    let most = 0;
    const done: string[] = [];
    for (const b of backends) {
      b.queue.consume(
        async (d) => {
          if (d.job.flowId === 'serial') {
            most = Math.max(most, ++running);
            await sleep(5);
            running--;
          }
          await d.ack();
          done.push(d.job.flowId);
        },
        { concurrency: 4, prefetch: 4, flowLimits: () => limits },
      );
    }
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => backends[i % 3]!.requests.accept(makeMessage({ flowId: i % 4 === 0 ? 'other' : 'serial' }), { maxAttempts: 1 })),
    );
    await waitFor(() => done.length === 40, '40 jobs done', 20_000);
    expect(most).toBe(1);
    expect(done.filter((f) => f === 'serial')).toHaveLength(30);
  });

  it('a consumer short of a limit that another process shares claims again when one of its own jobs of the flow ends', async () => {
    const a = await openBackend();
    const b = await openBackend();
    const limits = new Map([['two', 2]]);
    for (let i = 0; i < 3; i++) await a.requests.accept(makeMessage({ flowId: 'two' }), { maxAttempts: 1 });
    // b holds one job of the flow and has no slot left: it claims nothing more.
    const gate = deferred();
    let bHolds = false;
    b.queue.consume(async (d) => {
      bHolds = true;
      await gate.promise;
      await d.ack();
    }, { concurrency: 1, flowLimits: () => limits });
    await waitFor(() => bHolds, 'b holding a job');
    // a gets the other room (one job, not at its limit of 2 here); when that job ends, the third is due.
    const startedAt: number[] = [];
    const t0 = performance.now();
    a.queue.consume(async (d) => {
      startedAt.push(performance.now() - t0);
      await sleep(100);
      await d.ack();
    }, { concurrency: 4, flowLimits: () => limits });
    await waitFor(() => startedAt.length === 2, "a's two jobs", 3_000);
    // Not at its sweep, 1 s after it began consuming.
    expect(startedAt[1]!).toBeLessThan(600);
    gate.resolve();
  });

  it('a consumer waiting for room that another process holds hears when it frees (NOTIFY, not the 1 s sweep)', async () => {
    const a = await openBackend();
    const b = await openBackend();
    const limits = new Map([['one', 1]]);
    for (let i = 0; i < 2; i++) await a.requests.accept(makeMessage({ flowId: 'one' }), { maxAttempts: 1 });
    const gate = deferred();
    let held = false;
    const ca = a.queue.consume(async (d) => {
      held = true;
      await gate.promise;
      await d.ack();
    }, { concurrency: 1, flowLimits: () => limits });
    await waitFor(() => held, 'the first job held in process a');
    let startedAt = 0;
    b.queue.consume(async (d) => {
      startedAt = performance.now();
      await d.ack();
    }, { concurrency: 1, flowLimits: () => limits });
    // b's first claim found the limit full; its sweep would look again 1 s after it began consuming.
    await sleep(150);
    expect(startedAt).toBe(0);
    const stopped = ca.stop(); // a takes nothing more: the second job is b's to run
    const released = performance.now();
    gate.resolve();
    await stopped;
    await waitFor(() => startedAt > 0, "b's start");
    expect(startedAt - released).toBeLessThan(500);
  });
});
