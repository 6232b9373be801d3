import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { HookdError } from '../../src/core/errors.js';
import { PgAttachmentStore, type PgAttachmentStoreOptions } from '../../src/store/postgres/attachment-store.js';
import { PgDatabase, type PgConnectionOptions } from '../../src/store/postgres/database.js';
import { migrate } from '../../src/store/postgres/migrate.js';
import { describeAttachmentConformance, readAll, sha256 } from './attachments.suite.js';
import { rejection, sleep } from './helpers.js';
import { DATABASE_URL, pgSchemaPerTest } from './pg-schema.js';

/**
 * The PostgreSQL attachment store against a real server (DATABASE_URL, default the local test
 * database). Each test gets its own schema, dropped afterwards; an unreachable server fails the
 * tests (no skip).
 */
const MiB = 1024 * 1024;
let schema: string;
const opened: PgDatabase[] = [];
const quietLogger = { warn: () => {}, error: () => {}, info: () => {} };
const admin = pgSchemaPerTest({ onSchema: (s) => (schema = s), close: () => Promise.allSettled(opened.splice(0).map((db) => db.close())) });

/** A migrated schema of its own (the test's), and an attachment store on it. */
async function openStore(
  options: PgAttachmentStoreOptions = {},
  connection: Partial<PgConnectionOptions> = {},
): Promise<{ db: PgDatabase; store: PgAttachmentStore }> {
  const db = new PgDatabase({ connectionString: DATABASE_URL, schema, logger: quietLogger, ...connection });
  opened.push(db);
  await migrate(db);
  return { db, store: new PgAttachmentStore(db, options) };
}

async function leftovers(): Promise<string[]> {
  const { rows } = await admin.query<{ what: string }>(
    `SELECT 'attachment ' || id AS what FROM "${schema}".attachments
     UNION ALL SELECT 'chunk ' || attachment_id || '/' || seq FROM "${schema}".attachment_chunks`,
  );
  return rows.map((r) => r.what);
}

async function put(store: PgAttachmentStore, bytes: Buffer, piece = 64 * 1024) {
  const w = await store.create({ contentType: 'application/octet-stream' });
  for (let i = 0; i < bytes.length; i += piece) await w.write(bytes.subarray(i, i + piece));
  return w.finish();
}

// No skip when the server is missing: this test, and every other one, fails.
it('PostgreSQL is reachable at DATABASE_URL', async () => {
  const { rows } = await admin.query<{ ok: number }>('SELECT 1 AS ok');
  expect(rows).toEqual([{ ok: 1 }]);
});

// Small chunks: the suite's ~10 KB attachments span a dozen chunk rows.
describeAttachmentConformance('postgres', async () => {
  const { db, store } = await openStore({ chunkBytes: 1000 });
  return {
    store,
    async age(id, ms) {
      await admin.query(
        `UPDATE "${schema}".attachments SET created_at = created_at - $2, updated_at = updated_at - $2 WHERE id = $1`,
        [id, ms],
      );
    },
    leftovers,
    close: () => db.close(),
  };
});

describe('postgres attachment store', () => {
  it('stores each chunk as it fills (exactly chunkBytes, the last the rest) and finishes in one go', async () => {
    const { store } = await openStore({ chunkBytes: 1000 });
    const bytes = randomBytes(2500);
    const w = await store.create({ contentType: 'application/octet-stream', filename: 'f.bin' });
    for (let i = 0; i < 2100; i += 700) await w.write(bytes.subarray(i, i + 700));
    const chunks = () =>
      admin.query<{ seq: number; len: number }>(
        `SELECT seq, length(data) AS len FROM "${schema}".attachment_chunks WHERE attachment_id = $1 ORDER BY seq`,
        [w.id],
      );
    const header = () =>
      admin.query<{ finished: boolean; size: string; sha256: string | null; meta: string }>(
        `SELECT finished, size, sha256, meta FROM "${schema}".attachments WHERE id = $1`,
        [w.id],
      );
    // 2100 bytes written: two chunks stored, 100 bytes waiting for the next ones.
    expect((await chunks()).rows).toEqual([
      { seq: 0, len: 1000 },
      { seq: 1, len: 1000 },
    ]);
    expect((await header()).rows).toEqual([
      { finished: false, size: '2000', sha256: null, meta: '{"filename":"f.bin","contentType":"application/octet-stream"}' },
    ]);
    await w.write(bytes.subarray(2100));
    const ref = await w.finish();
    expect((await chunks()).rows).toEqual([
      { seq: 0, len: 1000 },
      { seq: 1, len: 1000 },
      { seq: 2, len: 500 },
    ]);
    expect((await header()).rows[0]).toMatchObject({ finished: true, size: '2500', sha256: sha256(bytes) });
    expect(ref.sha256).toBe(sha256(bytes));
  });

  it('another instance reads, and deletes, what one instance wrote', async () => {
    const a = await openStore({ chunkBytes: 1000 });
    const b = await openStore();
    const bytes = randomBytes(4321);
    const ref = await put(a.store, bytes, 999);
    const there = (await b.store.open(ref.id, { start: 990, end: 2010 }))!;
    expect(there.ref).toEqual(ref);
    expect((await readAll(there.stream)).equals(bytes.subarray(990, 2011))).toBe(true);
    expect(await b.store.delete([ref.id])).toBe(1);
    expect(await a.store.open(ref.id)).toBeUndefined();
    expect(await leftovers()).toEqual([]);
  });

  it('answers 503 when PostgreSQL is closed or unreachable; abort() still resolves', async () => {
    const { db, store } = await openStore({ chunkBytes: 1000 });
    const ref = await put(store, randomBytes(1500));
    const streaming = await store.create({ contentType: 'text/plain' });
    const finishing = await store.create({ contentType: 'text/plain' });
    await finishing.write(Buffer.from('tail'));
    const reading = (await store.open(ref.id))!;
    await db.close();
    for (const call of [
      store.create({ contentType: 'text/plain' }),
      store.open(ref.id),
      store.delete([ref.id]),
      store.sweep(async () => false, 0),
      streaming.write(randomBytes(1000)), // fills a chunk: an insert
      finishing.finish(),
      readAll(reading.stream),
    ]) {
      const err = await rejection(call);
      expect(err.statusCode).toBe(503);
      expect(err.code).toBe('STORE_UNAVAILABLE');
      expect(err.retryAfter).toBeGreaterThan(0);
    }
    await expect(streaming.abort()).resolves.toBeUndefined();
    await expect(finishing.abort()).resolves.toBeUndefined();

    // Nothing listens on the port: connection refused.
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const url = new URL(DATABASE_URL);
    url.host = `127.0.0.1:${port}`;
    const nowhere = new PgDatabase({ connectionString: url.toString(), schema, logger: quietLogger, connectTimeoutMs: 1_000 });
    opened.push(nowhere);
    const unreachable = new PgAttachmentStore(nowhere);
    for (const call of [unreachable.create({ contentType: 'text/plain' }), unreachable.open(ref.id), unreachable.delete([ref.id])]) {
      const err = await rejection(call);
      expect(err.statusCode).toBe(503);
      expect(err.retryAfter).toBeGreaterThan(0);
    }
  });

  it('a 20 MB attachment streams back chunk by chunk, fetched as the reader wants them', async () => {
    const { store } = await openStore(); // default chunks: 1 MiB
    const bytes = randomBytes(20 * MiB);
    const ref = await put(store, bytes);
    expect(ref.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));

    const whole = (await store.open(ref.id))!;
    const hash = createHash('sha256');
    const sizes: number[] = [];
    let mostBuffered = 0;
    for await (const part of whole.stream) {
      const buf = part as Buffer;
      sizes.push(buf.length);
      hash.update(buf);
      mostBuffered = Math.max(mostBuffered, whole.stream.readableLength);
    }
    expect(hash.digest('hex')).toBe(ref.sha256);
    expect(sizes).toEqual(Array.from({ length: 20 }, () => MiB));
    expect(mostBuffered).toBeLessThanOrEqual(MiB);

    // A reader that stops: the stream does not fetch the rest meanwhile.
    const slow = (await store.open(ref.id))!;
    const it = slow.stream[Symbol.asyncIterator]();
    expect(((await it.next()).value as Buffer).length).toBe(MiB);
    await sleep(300);
    expect(slow.stream.readableLength).toBeLessThanOrEqual(MiB);
    slow.stream.destroy();

    // A range in the middle: only the chunks it covers, the first and last cut to the range.
    const start = 5 * MiB - 10;
    const end = 7 * MiB + 9;
    const range = (await store.open(ref.id, { start, end }))!;
    const rangeSizes: number[] = [];
    const got: Buffer[] = [];
    for await (const part of range.stream) {
      rangeSizes.push((part as Buffer).length);
      got.push(part as Buffer);
    }
    expect(rangeSizes).toEqual([10, MiB, MiB, 10]);
    expect(Buffer.concat(got).equals(bytes.subarray(start, end + 1))).toBe(true);
  }, 60_000);

  it('a stream whose attachment is deleted while it is read fails instead of ending short', async () => {
    // Unlike the fs store (an open file handle pins the bytes), chunks are fetched as read.
    const { store } = await openStore({ chunkBytes: 1000 });
    const bytes = randomBytes(200_000);
    const ref = await put(store, bytes, 4096);
    const opened = (await store.open(ref.id))!;
    const it = opened.stream[Symbol.asyncIterator]();
    expect(((await it.next()).value as Buffer).equals(bytes.subarray(0, 1000))).toBe(true);
    expect(await store.delete([ref.id])).toBe(1);
    let read = 1000;
    const err = await (async () => {
      for (;;) {
        const next = await it.next();
        if (next.done) return undefined;
        read += (next.value as Buffer).length;
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HookdError);
    expect((err as HookdError).code).toBe('NOT_FOUND');
    expect(read).toBeLessThan(bytes.length);
  });

  it('the sweep keeps an upload that is old but still writing, and counts the bytes it frees', async () => {
    const { store } = await openStore({ chunkBytes: 1000 });
    const w = await store.create({ contentType: 'application/octet-stream' });
    await w.write(randomBytes(1500)); // one chunk stored, 500 bytes pending
    // Started two hours ago, wrote a chunk just now.
    await admin.query(`UPDATE "${schema}".attachments SET created_at = created_at - 7200000 WHERE id = $1`, [w.id]);
    expect(await store.sweep(async () => false, 3_600_000)).toEqual({ scanned: 0, removed: 0, freedBytes: 0 });
    await w.write(randomBytes(1000));
    // Then it stalled for two hours.
    await admin.query(`UPDATE "${schema}".attachments SET updated_at = updated_at - 7200000 WHERE id = $1`, [w.id]);
    expect(await store.sweep(async () => false, 3_600_000)).toEqual({ scanned: 1, removed: 1, freedBytes: 2000 });
    expect(await leftovers()).toEqual([]);
    const err = await rejection(w.write(randomBytes(1000)));
    expect(err.statusCode).toBe(503);
    await w.abort();
  });

  it('the sweep goes through a large table in pages', async () => {
    const { store } = await openStore({ sweepPageSize: 3 });
    const refs = [];
    for (let i = 0; i < 10; i++) refs.push(await put(store, Buffer.alloc(i + 1, i)));
    const fresh = await put(store, Buffer.from('fresh'));
    await admin.query(`UPDATE "${schema}".attachments SET created_at = created_at - 7200000, updated_at = updated_at - 7200000 WHERE id <> $1`, [fresh.id]);
    const keep = new Set(refs.filter((_, i) => i % 3 === 0).map((r) => r.id));
    const asked: string[] = [];
    const result = await store.sweep(async (id) => {
      asked.push(id);
      return keep.has(id);
    }, 3_600_000);
    expect(asked.sort()).toEqual(refs.map((r) => r.id).sort());
    const removed = refs.filter((r) => !keep.has(r.id));
    expect(result).toEqual({ scanned: 10, removed: removed.length, freedBytes: removed.reduce((n, r) => n + r.size, 0) });
    const { rows } = await admin.query<{ id: string }>(`SELECT id FROM "${schema}".attachments ORDER BY id`);
    expect(rows.map((r) => r.id)).toEqual([...keep, fresh.id].sort());
  });

  it('refuses a chunk size it cannot store', async () => {
    const { db } = await openStore();
    for (const chunkBytes of [0, -1, 1.5, 128 * MiB]) {
      expect(() => new PgAttachmentStore(db, { chunkBytes })).toThrow(RangeError);
    }
  });
});
