import { lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import type { ReceivedMessage } from '../../src/core/message.js';
import { openSqliteBackend } from '../../src/store/sqlite/index.js';
import { vacuumOnStart } from '../../src/store/sqlite/vacuum.js';
import { createHousekeeping } from '../../src/store/housekeeping.js';
import { createFsAttachmentStore } from '../../src/attachments/fs-store.js';
import { makeMessage } from '../conformance/helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function logger() {
  const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
  const at = (level: string) => (obj: object, msg?: string) => lines.push({ level, obj: obj as Record<string, unknown>, msg: msg ?? '' });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

/** A database of 2,000 requests of 4 KiB, the flood's 1,990 then deleted as a purge would: 8 MiB of free pages. */
async function bloated(file: string): Promise<{ kept: ReceivedMessage[]; bytes: number }> {
  const first = await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true });
  const msgs = Array.from({ length: 2_000 }, (_, i) => makeMessage({ flowId: i % 200 === 0 ? 'kept' : 'flood', rawBody: Buffer.alloc(4096, i % 251) }));
  try {
    await Promise.all(msgs.map((m) => first.requests.accept(m, { maxAttempts: 1 })));
  } finally {
    await first.close();
  }
  const db = new BetterSqlite3(file);
  db.exec(`DELETE FROM jobs WHERE flow_id = 'flood'; DELETE FROM requests WHERE flow_id = 'flood'; PRAGMA wal_checkpoint(TRUNCATE);`);
  db.close();
  return { kept: msgs.filter((m) => m.flowId === 'kept'), bytes: statSync(file).size };
}

function tempDb(): { dir: string; file: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'hookd-vacuum-'));
  dirs.push(dir);
  return { dir, file: path.join(dir, 'hookd.db') };
}

it('SQLITE_VACUUM_ON_START gives the space of deleted requests back to the disk, keeps what is left, the file and its mode', async () => {
  const { file } = tempDb();
  const { kept, bytes } = await bloated(file);
  expect(bytes).toBeGreaterThan(8 * 1024 * 1024);
  expect(loadConfig({ SQLITE_VACUUM_ON_START: 'true' }).sqliteVacuumOnStart).toBe(true);
  expect(loadConfig({}).sqliteVacuumOnStart).toBe(false);

  // Without the option the file keeps its size.
  await (await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true })).close();
  expect(statSync(file).size).toBe(bytes);

  const inode = statSync(file).ino;
  const log = logger();
  const compacted = await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true, vacuumOnStart: true, logger: log });
  try {
    expect(statSync(file).size).toBeLessThan(bytes / 10);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(file).ino).toBe(inode); // compacted in place
    expect(log.lines.map((l) => l.msg)).toEqual([expect.stringMatching(/compacting the database/), expect.stringMatching(/database compacted/)]);
    expect(log.lines[0]!.obj).toMatchObject({ beforeBytes: bytes, freePagesBytes: expect.any(Number) });
    expect(log.lines[1]!.obj).toMatchObject({ beforeBytes: bytes, afterBytes: statSync(file).size });
    for (const m of kept) expect(await compacted.requests.get(m.id)).toEqual(m);
    expect((await compacted.queue.stats()).ready).toBe(kept.length);
    expect(await compacted.requests.accept(makeMessage({ flowId: 'kept' }), { maxAttempts: 1 })).toEqual({ kind: 'stored' });
  } finally {
    await compacted.close();
  }

  // Compact already: said so, nothing rewritten.
  const again = logger();
  await (await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true, vacuumOnStart: true, logger: again })).close();
  expect(again.lines.map((l) => l.msg)).toEqual([expect.stringMatching(/no free pages/)]);
});

it('another process with the database open keeps working on it: idle, never used yet, or reading (the file then shrinks at the next checkpoint)', async () => {
  const { file } = tempDb();
  const { kept } = await bloated(file);
  const used = new BetterSqlite3(file);
  used.prepare('SELECT count(*) FROM requests').get();
  const unused = new BetterSqlite3(file); // opened, nothing run yet: holds no lock
  const log = logger();
  vacuumOnStart(file, { busyTimeoutMs: 100, logger: log });
  expect(log.lines.at(-1)).toMatchObject({ level: 'info', msg: expect.stringMatching(/database compacted$/) });
  // Their writes after the compaction land in the compacted database.
  used.prepare("INSERT INTO heartbeat (id, at) VALUES (1, 1)").run();
  unused.prepare('UPDATE heartbeat SET at = 2 WHERE id = 1').run();
  expect(unused.prepare('SELECT count(*) AS n FROM requests').get()).toEqual({ n: kept.length });
  used.close();
  unused.close();
  const check = new BetterSqlite3(file);
  expect(check.pragma('integrity_check', { simple: true })).toBe('ok');
  expect(check.prepare('SELECT at FROM heartbeat').get()).toEqual({ at: 2 });
  // SQLite's temp directory is a process-wide setting: back to its default.
  expect(check.pragma('temp_store_directory', { simple: true }) ?? '').toBe('');
  check.close();

  // Reading in a transaction while it compacts: compacted in the WAL, said so.
  const { file: other } = tempDb();
  await bloated(other);
  const reader = new BetterSqlite3(other);
  reader.prepare('BEGIN').run();
  reader.prepare('SELECT count(*) FROM requests').get();
  const busy = logger();
  vacuumOnStart(other, { busyTimeoutMs: 100, logger: busy });
  reader.prepare('COMMIT').run();
  reader.close();
  expect(busy.lines.at(-1)).toMatchObject({ level: 'info', msg: expect.stringMatching(/shrinks once its WAL is checkpointed/) });
  const backend = await openSqliteBackend({ path: other, leaseMs: 30_000, exclusive: true });
  try {
    expect((await backend.queue.stats()).ready).toBe(kept.length);
  } finally {
    await backend.close();
  }
});

it('a disk without room for the compaction: not compacted, said why, the start goes on', async () => {
  const { file } = tempDb();
  const { kept, bytes } = await bloated(file);
  const log = logger();
  const backend = await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true });
  await backend.close();
  vacuumOnStart(file, { busyTimeoutMs: 100, logger: log, diskFree: () => 1024 });
  expect(log.lines).toEqual([expect.objectContaining({ level: 'warn', msg: expect.stringMatching(/not enough free space/) })]);
  expect(statSync(file).size).toBe(bytes);
  const again = await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true });
  try {
    for (const m of kept) expect(await again.requests.get(m.id)).toEqual(m);
  } finally {
    await again.close();
  }
});

it('a database path that is a symlink: the real file is compacted, the link stays a link', async () => {
  const { dir } = tempDb();
  mkdirSync(path.join(dir, 'real'));
  const real = path.join(dir, 'real', 'hookd.db');
  const { kept, bytes } = await bloated(real);
  const link = path.join(dir, 'hookd.db');
  symlinkSync(real, link);
  const backend = await openSqliteBackend({ path: link, leaseMs: 30_000, exclusive: true, vacuumOnStart: true, logger: logger() });
  try {
    expect(statSync(real).size).toBeLessThan(bytes / 10);
    for (const m of kept) expect(await backend.requests.get(m.id)).toEqual(m);
  } finally {
    await backend.close();
  }
  expect(lstatSync(link).isSymbolicLink()).toBe(true);
  expect(statSync(link).ino).toBe(statSync(real).ino);
});

/** 2,000 requests of 4 KiB received an hour ago, their jobs done (purgeable), and 10 received now. */
async function purgeable(file: string, before?: (db: BetterSqlite3.Database) => void): Promise<void> {
  if (before) {
    const db = new BetterSqlite3(file);
    before(db);
    db.close();
  }
  const b = await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true });
  try {
    const old = Date.now() - 3_600_000;
    await Promise.all(Array.from({ length: 2_000 }, (_, i) => b.requests.accept(makeMessage({ flowId: 'old', receivedAt: old + i, rawBody: Buffer.alloc(4096, i % 251) }), { maxAttempts: 1 })));
    await Promise.all(Array.from({ length: 10 }, () => b.requests.accept(makeMessage({ flowId: 'new' }), { maxAttempts: 1 })));
  } finally {
    await b.close();
  }
  const db = new BetterSqlite3(file);
  db.exec(`DELETE FROM jobs WHERE flow_id = 'old'; PRAGMA wal_checkpoint(TRUNCATE);`);
  db.close();
}

it('the retention purge gives the space of purged requests back to the disk while hookd runs (incremental auto-vacuum)', async () => {
  const { dir, file } = tempDb();
  await purgeable(file);
  const bytes = statSync(file).size;
  expect(bytes).toBeGreaterThan(8 * 1024 * 1024);
  const b = await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true });
  const log = logger();
  try {
    const hk = createHousekeeping({ requests: b.requests, attachments: createFsAttachmentStore(dir), retentionMs: 60_000, logger: log });
    const report = await hk.purge();
    expect(report.requests).toBe(2_000);
    expect(report.reclaimedBytes).toBeGreaterThan(8 * 1024 * 1024);
    // Given back 8 MiB per write (more than one here), until nothing is left.
    expect(await b.requests.reclaimSpace!(2048)).toMatchObject({ freedBytes: 0, freeBytesLeft: 0, incremental: true });
    expect((await b.requests.list({ limit: 100 })).map((m) => m.flowId)).toEqual(Array(10).fill('new'));
    expect(await b.requests.accept(makeMessage({ flowId: 'new' }), { maxAttempts: 1 })).toEqual({ kind: 'stored' });
  } finally {
    await b.close();
  }
  // The file is cut at the checkpoint that copies the vacuum's pages (at the latest, on close).
  expect(statSync(file).size).toBeLessThan(bytes / 4);
  expect(log.lines.filter((l) => l.level === 'warn')).toEqual([]);
});

it('a database made before (auto_vacuum NONE) keeps the space until SQLITE_VACUUM_ON_START converts it; then the purge gives it back', async () => {
  const { dir, file } = tempDb();
  // As hookd made databases before: the first table created without incremental auto-vacuum.
  await purgeable(file, (db) => db.exec('PRAGMA auto_vacuum = NONE; CREATE TABLE made_before (x)'));
  const b = await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true });
  const log = logger();
  try {
    const hk = createHousekeeping({ requests: b.requests, attachments: createFsAttachmentStore(dir), retentionMs: 60_000, logger: log });
    const report = await hk.purge();
    expect(report).toMatchObject({ requests: 2_000, reclaimedBytes: 0 });
    expect(log.lines.map((l) => l.msg)).toEqual([expect.stringMatching(/SQLITE_VACUUM_ON_START=true once converts it/)]);
  } finally {
    await b.close();
  }
  const converted = await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true, vacuumOnStart: true, logger: logger() });
  await converted.close();
  const db = new BetterSqlite3(file, { readonly: true });
  expect(db.pragma('auto_vacuum', { simple: true })).toBe(2);
  db.close();
  // Converted even without free pages to give back (the purge's were given back by the VACUUM).
  await purgeable(file);
  const bytes = statSync(file).size;
  const again = await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true });
  try {
    const hk = createHousekeeping({ requests: again.requests, attachments: createFsAttachmentStore(dir), retentionMs: 60_000, logger: logger() });
    expect((await hk.purge()).reclaimedBytes).toBeGreaterThan(8 * 1024 * 1024);
  } finally {
    await again.close();
  }
  expect(statSync(file).size).toBeLessThan(bytes / 4);
});
