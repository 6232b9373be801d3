import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HookdError } from '../../src/core/errors.js';
import type { Delivery } from '../../src/queue/contract.js';
import { openSqliteBackend, type SqliteBackend, type SqliteBackendOptions } from '../../src/store/sqlite/index.js';
import { migrate } from '../../src/store/sqlite/migrate.js';
import { migrations } from '../../src/store/sqlite/migrations/index.js';
import { claimJobs } from '../../src/store/sqlite/ops/claim-jobs.js';
import { deferred, makeMessage, rejection, sleep, waitFor } from './helpers.js';
import { describeLeaseConformance } from './lease.suite.js';
import { describeQueueConformance } from './queue.suite.js';
import { describeStoreConformance } from './store.suite.js';

let dir: string;
let dbPath: string;
const opened: SqliteBackend[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hookd-sqlite-'));
  dbPath = join(dir, 'data', 'hookd.db');
});

afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((b) => b.close()));
  rmSync(dir, { recursive: true, force: true });
});

const quietLogger = { warn: () => {}, error: () => {}, info: () => {} };

async function open(extra: Partial<SqliteBackendOptions> = {}): Promise<SqliteBackend> {
  const b = await openSqliteBackend({ path: dbPath, logger: quietLogger, ...extra });
  opened.push(b);
  return b;
}

describeStoreConformance('sqlite', () => open());
describeQueueConformance('sqlite', () => open());
describeLeaseConformance('sqlite', (o) => open(o ?? {}), { endsLeasesAtClaim: true });

describe('sqlite: hand-off', () => {
  it('hands a job to an idle consumer in the accept transaction (no claim round trip)', async () => {
    const b = await open();
    let n = 0;
    b.queue.consume(async (d) => {
      n++;
      await d.ack();
    }, { concurrency: 2 });
    await sleep(50); // the initial claim (empty queue) has landed
    // The ops written from here on, by name (timers may add lease or heartbeat writes on a slow machine).
    const names: string[] = [];
    const call = b.writer.call.bind(b.writer);
    b.writer.call = ((name: Parameters<typeof call>[0], ...rest: unknown[]) => {
      names.push(name);
      return (call as (...a: unknown[]) => unknown)(name, ...rest);
    }) as typeof b.writer.call;
    for (let i = 0; i < 10; i++) {
      await b.requests.accept(makeMessage(), { maxAttempts: 3 });
      await waitFor(() => n === i + 1, `delivery ${i + 1}`);
    }
    await waitFor(() => names.filter((x) => x === 'ackJob').length >= 10, 'acks');
    await sleep(50);
    // Exactly accept + ack per job: no claim was needed.
    expect(names.filter((x) => x === 'acceptRequest' || x === 'ackJob' || x === 'claimJobs').sort()).toEqual([
      ...Array<string>(10).fill('acceptRequest'),
      ...Array<string>(10).fill('ackJob'),
    ]);
  });
});

describe('sqlite: one process per file (exclusive)', () => {
  it('refuses a second process on the same file until the first closes', async () => {
    const first = await open({ exclusive: true });
    const err = await openSqliteBackend({ path: dbPath, logger: quietLogger, exclusive: true }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/in use by another hookd process/);
    // The refused open left nothing behind: the first one still writes.
    await first.requests.accept(makeMessage(), { maxAttempts: 1 });
    await first.close();
    const second = await open({ exclusive: true });
    await second.checkWritable();
  });

  it('delivers the jobs a dead process held at once, not after their lease; a lost last attempt is a dead letter', async () => {
    // The previous process: long leases, two jobs held and begun (one of a single attempt).
    const old = await open({ leaseMs: 60_000 });
    const again = makeMessage();
    const last = makeMessage();
    let held = 0;
    old.queue.consume(async (d) => {
      await old.executions.begin({ requestId: d.job.requestId, flowId: d.job.flowId, attempt: d.job.attempts, now: Date.now() });
      held++;
      await new Promise(() => {});
    }, { concurrency: 2 });
    await old.requests.accept(again, { maxAttempts: 3 });
    await old.requests.accept(last, { maxAttempts: 1 });
    await waitFor(() => held === 2, 'both jobs leased');
    await old.close(); // leases kept, as after a crash

    const started = Date.now();
    const b = await open({ leaseMs: 60_000, exclusive: true });
    const seen: Delivery[] = [];
    b.queue.consume(async (d) => {
      seen.push(d);
      await d.ack();
    }, { concurrency: 2 });
    await waitFor(() => seen.length === 1, 'redelivery', 5_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(seen[0]!.job).toMatchObject({ requestId: again.id, attempts: 2 });
    const dead = await b.queue.deadLetters({ limit: 5 });
    expect(dead.map((d) => d.requestId)).toEqual([last.id]);
    expect(dead[0]!.lastError).toMatch(/lease expired/);
    await sleep(200);
    expect(seen).toHaveLength(1);
  });

  it('without the lock, leases of another process are left to run out', async () => {
    const old = await open({ leaseMs: 60_000 });
    let held = false;
    old.queue.consume(async () => {
      held = true;
      await new Promise(() => {});
    }, { concurrency: 1 });
    await old.requests.accept(makeMessage(), { maxAttempts: 3 });
    await waitFor(() => held, 'leased');
    await old.close();
    const b = await open({ leaseMs: 60_000 });
    expect(await b.queue.stats()).toMatchObject({ ready: 0, inFlight: 1 });
  });
});

describe('sqlite: writer thread and storage failures', () => {
  it('fails the ops of a dead writer thread with 503, then recovers with a new thread', async () => {
    const b = await open();
    await b.requests.accept(makeMessage(), { maxAttempts: 1 });
    b.writer.crashOnNextBatch();
    const lost = makeMessage();
    const err = await rejection(b.requests.accept(lost, { maxAttempts: 1 }));
    expect(err.statusCode).toBe(503);
    expect(err.code).toBe('STORE_UNAVAILABLE');
    expect(err.retryAfter).toBeGreaterThan(0);
    expect(err.message).toMatch(/writer thread exited/);

    // A new writer takes over: the retry of the same request is stored.
    expect(await b.requests.accept(lost, { maxAttempts: 1 })).toEqual({ kind: 'stored' });
    await b.checkWritable();
    expect(await b.requests.get(lost.id)).toEqual(lost);

    // Killed while idle: the next write simply goes to the next thread.
    await b.writer.terminate();
    const m = makeMessage();
    expect(await b.requests.accept(m, { maxAttempts: 1 })).toEqual({ kind: 'stored' });
  });

  it('turns a lock held too long by another connection (SQLITE_BUSY) into 503', async () => {
    const b = await open({ busyTimeoutMs: 100 });
    const other = new BetterSqlite3(dbPath);
    try {
      other.exec('BEGIN IMMEDIATE');
      const err = await rejection(b.requests.accept(makeMessage(), { maxAttempts: 1 }));
      expect(err.statusCode).toBe(503);
      expect(err.message).toMatch(/SQLITE_BUSY/);
      other.exec('ROLLBACK');
      expect(await b.requests.accept(makeMessage(), { maxAttempts: 1 })).toEqual({ kind: 'stored' });
    } finally {
      other.close();
    }
  });

  it('turns a full database (SQLITE_FULL) into 503 and keeps what was committed; not ready until the disk has room again', async () => {
    let free = 1024 * 1024; // bytes the disk has left, as statfs would say
    const b = await open({ writerPragmas: ['max_page_count = 80'], diskSpace: () => ({ free, total: 1024 ** 4 }) });
    const stored: string[] = [];
    let failure: HookdError | undefined;
    for (let i = 0; i < 100 && failure === undefined; i++) {
      const m = makeMessage({ rawBody: Buffer.alloc(32 * 1024, i) });
      try {
        await b.requests.accept(m, { maxAttempts: 1 });
        stored.push(m.id);
      } catch (err) {
        failure = err as HookdError;
        expect(await b.requests.get(m.id)).toBeUndefined();
      }
    }
    expect(failure).toBeInstanceOf(HookdError);
    expect(failure!.statusCode).toBe(503);
    expect(failure!.message).toMatch(/SQLITE_FULL/);
    expect(stored.length).toBeGreaterThan(0);
    for (const id of stored) expect((await b.requests.get(id))!.rawBody.length).toBe(32 * 1024);
    // The readiness check's own write still fits: it must not say ready while requests are refused.
    await expect(b.checkWritable()).rejects.toMatchObject({ statusCode: 503, message: expect.stringMatching(/disk of the database is full/) });
    free = 1024 ** 3; // room again (a file was deleted)
    await b.checkWritable();
  });

  it('isolates a failing op: it is rolled back alone, the rest of the group commit is kept', async () => {
    const b = await open();
    const ok1 = makeMessage();
    const ok2 = makeMessage();
    const before = b.writer.counters.transactions;
    // An op already in flight: the three below then leave together in one message (one batch,
    // one transaction); an idle writer would get the first of them on its own.
    const inFlight = b.requests.accept(makeMessage(), { maxAttempts: 1 });
    const results = await Promise.allSettled([
      b.requests.accept(ok1, { maxAttempts: 1 }),
      // doc is NOT NULL: a constraint error inside the same transaction.
      b.writer.call('putFlow', { id: 'broken', doc: null as unknown as string }),
      b.requests.accept(ok2, { maxAttempts: 1 }),
    ]);
    await inFlight;
    expect(b.writer.counters.transactions - before).toBeLessThanOrEqual(2);
    expect(results[0]).toMatchObject({ status: 'fulfilled', value: { kind: 'stored' } });
    expect(results[1]).toMatchObject({ status: 'rejected', reason: { code: 'INTERNAL', statusCode: 500 } });
    expect(results[2]).toMatchObject({ status: 'fulfilled', value: { kind: 'stored' } });
    expect(await b.requests.get(ok1.id)).toEqual(ok1);
    expect(await b.requests.get(ok2.id)).toEqual(ok2);
    expect(await b.flows.get('broken')).toBeUndefined();
  });

  it('commits concurrent writes in groups', async () => {
    const b = await open();
    const before = { ...b.writer.counters };
    const outcomes = await Promise.all(Array.from({ length: 200 }, () => b.requests.accept(makeMessage(), { maxAttempts: 1 })));
    expect(outcomes.every((o) => o.kind === 'stored')).toBe(true);
    const transactions = b.writer.counters.transactions - before.transactions;
    expect(b.writer.counters.ops - before.ops).toBe(200);
    expect(transactions).toBeLessThanOrEqual(10);
  });
});

describe('sqlite: storage layout', () => {
  it('stores a compact JSON body once (as raw_body) and any other body as JSON text', async () => {
    const b = await open();
    const compact = makeMessage({ body: { n: 1 }, rawBody: Buffer.from('{"n":1}') });
    const pretty = makeMessage({ body: { n: 1 }, rawBody: Buffer.from('{ "n": 1 }') });
    const none = makeMessage({ body: null, rawBody: Buffer.alloc(0), contentType: null });
    for (const m of [compact, pretty, none]) await b.requests.accept(m, { maxAttempts: 1 });
    const db = new BetterSqlite3(dbPath, { readonly: true });
    try {
      const row = db.prepare('SELECT body, body_is_raw FROM requests WHERE id = ?');
      expect(row.get(compact.id)).toEqual({ body: null, body_is_raw: 1 });
      expect(row.get(pretty.id)).toEqual({ body: '{"n":1}', body_is_raw: 0 });
      expect(row.get(none.id)).toEqual({ body: null, body_is_raw: 0 });
    } finally {
      db.close();
    }
    expect((await b.requests.get(compact.id))!.body).toEqual({ n: 1 });
    expect((await b.requests.get(none.id))!.body).toBeNull();
  });
});

describe('sqlite: schema', () => {
  it('runs numbered migrations once and refuses an unknown (newer) schema', async () => {
    const b = await open();
    await b.close();
    await (await open()).close();
    const db = new BetterSqlite3(dbPath);
    try {
      expect(db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all()).toEqual([
        { version: 1, name: 'init' },
        { version: 2, name: 'payloads' },
        { version: 3, name: 'request_order' },
        { version: 4, name: 'lost_deliveries' },
        { version: 5, name: 'ready_by_flow' },
        { version: 6, name: 'flow_deletions' },
        { version: 7, name: 'flow_format_2' },
        { version: 8, name: 'request_order_index_name' },
      ]);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')").run();
    } finally {
      db.close();
    }
    // Not a 503 (an outage to wait out): a configuration to change, said as such.
    const refused = () => openSqliteBackend({ path: dbPath, logger: quietLogger, exclusive: true }).then(() => undefined, (e: unknown) => e);
    const err = await refused();
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(HookdError);
    expect((err as Error).message).toBe(
      `the database ${dbPath} was upgraded by a newer hookd: its schema version 999 (future) is unknown to this build, which knows versions up to ${migrations.length}. ` +
        'Start that hookd (or a later one) on it; to go back to this build, restore the copy of the database taken before the upgrade',
    );
    // The refusal left the file unlocked: a second start is refused the same way, not as 'in use'.
    expect(((await refused()) as Error).message).toBe((err as Error).message);
  });

  it('a database this hookd opened is refused by the builds that knew schema 6 (they misread its flows)', async () => {
    // Builds of schema 6 (December 5, 13:51 to the sealing of http step headers and later) read
    // flows this build writes wrongly: a sealed step header was sent as the header itself
    // ("Authorization: v1:…"), a flow's concurrency limit was ignored. Those builds refuse only
    // schema versions they do not know, so the flow format's change is a version of its own.
    await (await open()).close();
    const db = new BetterSqlite3(dbPath);
    try {
      expect(() => migrate(db, migrations.filter((m) => m.version <= 6))).toThrow(/schema versions 7 \(flow_format_2\), .* are unknown to this build, which knows versions up to 6/);
    } finally {
      db.close();
    }
  });
});

describe('sqlite: schema of an upgraded database', () => {
  it('a database migrated by the first text of migration 3 (builds of December 5, 07:37 to 09:09) ends with the schema of a new one', () => {
    // That text rebuilt the retention index under its old name; the one shipped since builds
    // requests_received_at_id (IF NOT EXISTS, as PostgreSQL's migration 6).
    const FIRST_0003 = `
      DROP INDEX requests_flow_id;
      CREATE INDEX requests_flow_received ON requests (flow_id, received_at, id);
      DROP INDEX requests_received_at;
      CREATE INDEX requests_received_at ON requests (received_at, id);`;
    const schemaOf = (db: BetterSqlite3.Database) =>
      db.prepare("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").all();
    const upgraded = new BetterSqlite3(join(dir, 'upgraded.db'));
    const fresh = new BetterSqlite3(join(dir, 'fresh.db'));
    try {
      migrate(upgraded, [...migrations.slice(0, 2), { version: 3, name: 'request_order', sql: FIRST_0003 }]);
      migrate(upgraded);
      migrate(fresh);
      expect(schemaOf(upgraded)).toEqual(schemaOf(fresh));
    } finally {
      upgraded.close();
      fresh.close();
    }
  });
});

describe('sqlite: WAL size under sustained writes', () => {
  it('restarts the WAL once it passes walRestartBytes, so it stays bounded while writes never pause', async () => {
    let restarts = 0;
    let syncs = 0;
    const b = await open({ walRestartBytes: 256 * 1024, checkpointIntervalMs: 50, onWalRestart: () => restarts++, onWalSync: () => syncs++ });
    const wal = `${dbPath}-wal`;
    let largest = 0;
    let stop = false;
    // 32 writers back to back, 1 KiB bodies: the writer always has a transaction queued, and
    // PASSIVE checkpoints alone never let the WAL start over (it grew past 64 MiB here).
    const body = Buffer.from(JSON.stringify({ pad: 'x'.repeat(1000) }));
    const lanes = Array.from({ length: 32 }, async () => {
      while (!stop) await b.requests.accept(makeMessage({ rawBody: body, body: null }), { maxAttempts: 3 });
    });
    // Until 48 MiB of bodies alone went through the WAL (3× the bound below): 10–20 s here, up to a
    // minute on a busy machine.
    const deadline = Date.now() + 60_000;
    while (b.writer.counters.ops * body.length < 48 * 1024 * 1024 && Date.now() < deadline) {
      await sleep(20);
      largest = Math.max(largest, statSync(wal).size);
    }
    stop = true;
    await Promise.all(lanes);
    expect(b.writer.counters.ops * body.length).toBeGreaterThanOrEqual(48 * 1024 * 1024);
    expect(restarts).toBeGreaterThan(0);
    expect(syncs).toBeGreaterThan(0);
    expect(syncs).toBeLessThanOrEqual(b.writer.counters.transactions);
    expect(largest).toBeLessThan(16 * 1024 * 1024);
  }, 75_000);
});

describe('sqlite: WAL restart and a long read', () => {
  it('never holds writes back for a reader of an old snapshot, and restarts the WAL once it is gone', async () => {
    let restarts = 0;
    const b = await open({ walRestartBytes: 64 * 1024, checkpointIntervalMs: 50, onWalRestart: () => restarts++ });
    const body = Buffer.from(JSON.stringify({ pad: 'x'.repeat(1000) }));
    let slowest = 0;
    const writeFor = (ms: number) => {
      const until = Date.now() + ms;
      return Promise.all(
        Array.from({ length: 8 }, async () => {
          while (Date.now() < until) {
            const t0 = performance.now();
            await b.requests.accept(makeMessage({ rawBody: body, body: null }), { maxAttempts: 3 });
            slowest = Math.max(slowest, performance.now() - t0);
          }
        }),
      );
    };
    // A reader holding an old snapshot, as a long API read would.
    const reader = new BetterSqlite3(dbPath, { readonly: true });
    reader.exec('BEGIN');
    reader.prepare('SELECT count(*) FROM requests').get();
    try {
      await writeFor(1_500);
      // No RESTART waited on the reader while holding writes back (that took seconds).
      expect(slowest).toBeLessThan(1_000);
    } finally {
      reader.exec('COMMIT');
      reader.close();
    }
    const before = restarts;
    await writeFor(1_000);
    expect(restarts).toBeGreaterThan(before);
  }, 20_000);
});

describe('sqlite: a failed fsync of the WAL', () => {
  it('answers 503 for what it covered, then makes the WAL durable in the database file before committing anything else', async () => {
    const logged: string[] = [];
    const logger = { warn: () => {}, error: (_o: object, msg: string) => logged.push(`error: ${msg}`), info: (_o: object, msg: string) => logged.push(`info: ${msg}`) };
    // No RESTART checkpoint: the WAL keeps what it has.
    const b = await open({ walRestartBytes: 1e12, logger });
    const wal = `${dbPath}-wal`;
    const before = makeMessage();
    await b.requests.accept(before, { maxAttempts: 3 });
    expect(statSync(wal).size).toBeGreaterThan(0);

    b.writer.failNextSync();
    const failed = makeMessage();
    const err = await rejection(b.requests.accept(failed, { maxAttempts: 3 }));
    expect(err.statusCode).toBe(503);
    expect(err.message).toMatch(/EIO/);

    // The next write first checkpoints the whole WAL into the database file (TRUNCATE): the WAL
    // then holds only that write's own transaction.
    const sizeBefore = statSync(wal).size;
    const after = makeMessage();
    await b.requests.accept(after, { maxAttempts: 3 });
    expect(statSync(wal).size).toBeLessThan(sizeBefore);
    const db = new BetterSqlite3(dbPath, { readonly: true });
    try {
      // The failed write is kept too: a 503 never says "not stored" (a retry is a duplicate).
      const ids = (db.prepare('SELECT id FROM requests').pluck().all() as string[]).sort();
      expect(ids).toEqual([before.id, failed.id, after.id].sort());
    } finally {
      db.close();
    }
    expect(await b.requests.get(after.id)).toMatchObject({ id: after.id });
    expect(logged).toEqual([expect.stringMatching(/^error: fsync of the SQLite WAL failed/), expect.stringMatching(/^info: SQLite WAL durable again/)]);
  });
});

describe('sqlite: claims with caps (limited or stopped flows)', () => {
  it('come back full while jobs are due, over many flows of one job each; a flow at 0 is never claimed; a cap holds', async () => {
    const db = new BetterSqlite3(':memory:');
    migrate(db);
    const claim = claimJobs({ db, leaseMs: 30_000 });
    const insert = db.prepare(`INSERT INTO jobs (id, flow_id, request_id, state, attempts, max_attempts, run_at, enqueued_at) VALUES (?, ?, ?, 'ready', 0, 3, ?, ?)`);
    const flows = Array.from({ length: 300 }, (_, i) => `f${String(i).padStart(3, '0')}`);
    let n = 0;
    const at = Date.now() - 1000;
    for (const flowId of [...flows, 'limited', 'limited', 'limited', 'limited', 'limited']) insert.run(`j${++n}`, flowId, `r${n}`, at + n, at + n);
    const caps: Record<string, number> = { f000: 0, 'stopped-without-jobs': 0, limited: 2 };
    const sizes: number[] = [];
    const seen: string[] = [];
    for (;;) {
      const { jobs } = claim({ owner: 'o', limit: 128, caps: { ...caps } });
      if (jobs.length === 0) break;
      sizes.push(jobs.length);
      seen.push(...jobs.map((j) => j.flow_id));
      for (const j of jobs) if (caps[j.flow_id] !== undefined) caps[j.flow_id]!--;
    }
    expect(sizes).toEqual([128, 128, 45]);
    expect(seen).not.toContain('f000');
    expect(seen.filter((f) => f === 'limited')).toHaveLength(2);
    expect(new Set(seen).size).toBe(300);
    db.close();
  });
});
