/**
 * The SQLite writer thread. better-sqlite3 is synchronous and COMMIT waits for fsync, so all writes
 * run here, off the main event loop. Group commit: every op that arrived while the previous
 * transaction was committing is drained (receiveMessageOnPort) into the next transaction.
 */
import { closeSync, fdatasync, fstatSync, openSync, statSync } from 'node:fs';
import { receiveMessageOnPort, workerData } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';
import { openWriterConnection } from '../connection.js';
import { migrate } from '../migrate.js';
import { compileOps } from '../ops/index.js';
import { createBatchRunner, type BatchRunner } from './run-batch.js';
import { errorInfo, type FromWriter, type OpCall, type OpOutcome, type ToWriter, type WriterErrorInfo, type WriterInit } from './protocol.js';

/** Bounds one transaction (and the latency of its first op) under a flood. */
const MAX_OPS_PER_TRANSACTION = 4096;

const init = workerData as WriterInit;
const port = init.port;
const post = (m: FromWriter): void => port.postMessage(m);

let db: BetterSqlite3.Database;
let runner: BatchRunner;
try {
  db = openWriterConnection(init.path, init.busyTimeoutMs);
  migrate(db);
  for (const p of init.pragmas) db.pragma(p);
  runner = createBatchRunner(db, compileOps({ db, leaseMs: init.leaseMs }));
} catch (err) {
  post({ t: 'fatal', error: errorInfo(err) });
  port.close();
  throw err;
}

const queue: OpCall[] = [];
let closing = false;

/*
 * Durability, pipelined. The connection commits with synchronous=NORMAL: COMMIT appends the
 * transaction to the WAL without waiting for the disk. Results are posted only after an fsync of
 * the WAL file that began after their COMMIT returned — the same guarantee as synchronous=FULL
 * (nothing is acknowledged before it is on disk) — but the fsync runs on libuv's thread pool while
 * this thread commits the next batch, and one fsync covers every batch committed before it. With
 * FULL, each COMMIT held the writer for its fsync, and every connection waited behind it.
 * (A WAL restart only follows a complete checkpoint, whose frames are then fsynced in the
 * database file, so a frame never leaves the WAL before it is durable elsewhere.)
 * fdatasync, as SQLite itself syncs on Linux: the data and the metadata needed to read it back (a
 * grown file's size), not timestamps (no difference in cost was measured on this machine).
 */
// Beside the file SQLite opened, symlinks resolved (as SQLite names its WAL): a database path that
// is a symlink must not have a stale or missing file beside the link fsynced instead.
const dbPath = (db.pragma('database_list') as Array<{ name: string; file: string }>).find((d) => d.name === 'main')?.file ?? init.path;
const walPath = `${dbPath}-wal`;
let walFd: number | undefined;
/**
 * The database file as opened (its device and inode). Deleted or replaced (renamed over) while
 * hookd runs, it takes every commit made since with it at the next start: looked at after each
 * fsync, before anything that fsync covers is answered. From then on every write fails (503) until
 * hookd is restarted. Looked at by path, not through a descriptor of its own: closing one would
 * drop the POSIX locks this process holds on the file (SQLite's, the one-process lock's).
 */
const identity = (path: string): string | undefined => {
  try {
    const s = statSync(path);
    return `${s.dev}:${s.ino}`;
  } catch {
    return undefined;
  }
};
const dbId = identity(dbPath);
// The one-process lock's file, when this process holds it: deleted, a second process could open
// the database and run its jobs too. What was committed is still in the database (durable).
const lockId = init.lockPath === undefined ? undefined : identity(init.lockPath);
let fileGone: WriterErrorInfo | undefined;

/** The first watched file that is gone or replaced (the database's files first), or undefined while all are there. */
function goneFile(): { path: string; durable: boolean } | undefined {
  if (identity(dbPath) !== dbId) return { path: dbPath, durable: false };
  if (walFd !== undefined) {
    try {
      if (fstatSync(walFd).nlink === 0) return { path: walPath, durable: false };
    } catch {
      return { path: walPath, durable: false };
    }
  }
  if (init.lockPath !== undefined && identity(init.lockPath) !== lockId) return { path: init.lockPath, durable: true };
  return undefined;
}
/** Set with fileGone when only the lock went: what is committed is still made durable and answered. */
let goneDurable = false;
let committed: OpOutcome[] = [];
let syncing = false;
/**
 * Set when an fsync of the WAL failed. Linux may then mark the pages that failed to reach the disk
 * clean: they stay readable from the page cache but are never written again, and a later fsync
 * that succeeds proves nothing about them. The WAL's checksums chain its frames, so a lost frame
 * also voids every later one on recovery. Nothing is answered as committed again until a TRUNCATE
 * checkpoint has copied the whole WAL (read back through the page cache, where it is intact) into
 * the database file with fresh writes and fsynced that file (recoverWal).
 */
let unsynced: WriterErrorInfo | undefined;
/** Test hook: the next fsync reports EIO. */
let failNextSync = false;

/** The batches this fsync covered and those committed since fail with `info` (never durable now). */
function failAll(covered: OpOutcome[], info: WriterErrorInfo): void {
  const failed = covered.concat(committed);
  committed = [];
  post({ t: 'results', r: failed.map(([id]) => [id, false, info] as OpOutcome) });
}

function syncCommitted(): void {
  if (syncing || committed.length === 0) return;
  const covered = committed;
  committed = [];
  try {
    walFd ??= openSync(walPath, 'r+');
  } catch (err) {
    post({ t: 'results', r: covered.map(([id]) => [id, false, errorInfo(err)] as OpOutcome) });
    return;
  }
  syncing = true;
  const started = performance.now();
  fdatasync(walFd, (err) => {
    syncing = false;
    if (failNextSync && !err) {
      failNextSync = false;
      err = Object.assign(new Error('EIO: i/o error, fdatasync (test hook)'), { code: 'EIO' });
    }
    if (err) {
      // Batches committed while this fsync ran follow its frames in the WAL: they fail with it.
      unsynced = errorInfo(err);
      post({ t: 'syncFailed', error: unsynced });
      failAll(covered, unsynced);
    } else {
      if (fileGone === undefined) {
        const file = goneFile();
        if (file !== undefined) {
          fileGone = { code: 'SQLITE_FILE_GONE', message: `${file.path} was deleted or replaced while hookd ran: restart hookd` };
          goneDurable = file.durable;
          post({ t: 'fileGone', error: fileGone });
        }
      }
      // Only the lock went: the database is intact, so what this fsync covered is durable, and
      // what was committed meanwhile is made so and answered too; no new batch starts (pump).
      if (fileGone !== undefined && !goneDurable) failAll(covered, fileGone);
      else {
        post({ t: 'results', r: covered, syncMs: performance.now() - started });
        syncCommitted(); // batches committed while this fsync ran
      }
    }
    maybeClose();
  });
}

/** After a failed fsync: true once the whole WAL is durable in the database file again. */
function recoverWal(): boolean {
  try {
    const [result] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
    if (result?.busy === 0) {
      unsynced = undefined;
      post({ t: 'syncRecovered' });
      return true;
    }
  } catch {
    // The checkpoint's own fsync failed (the error is reported once per file); the next op retries.
  }
  return false;
}

function maybeClose(): void {
  if (!closing || syncing || committed.length > 0 || queue.length > 0) return;
  if (walFd !== undefined) closeSync(walFd);
  db.close();
  post({ t: 'closed' });
  port.close();
}

function take(m: ToWriter): void {
  if (m.t === 'close') {
    closing = true;
    return;
  }
  if (m.crash) throw new Error('writer crash requested (test hook)');
  if (m.failNextSync) failNextSync = true;
  for (const op of m.ops) queue.push(op);
}

function pump(): void {
  for (;;) {
    // Everything already waiting on the port joins this transaction.
    for (let r = receiveMessageOnPort(port); r !== undefined; r = receiveMessageOnPort(port)) take(r.message as ToWriter);
    if (queue.length === 0) break;
    const batch = queue.length > MAX_OPS_PER_TRANSACTION ? queue.splice(0, MAX_OPS_PER_TRANSACTION) : queue.splice(0);
    if (fileGone !== undefined) {
      const info = fileGone;
      post({ t: 'results', r: batch.map(([id]) => [id, false, info] as OpOutcome) });
      continue;
    }
    if (unsynced !== undefined && !recoverWal()) {
      // Nothing is committed until the WAL is safe again: this batch fails as the fsync did (503).
      const info = unsynced;
      post({ t: 'results', r: batch.map(([id]) => [id, false, info] as OpOutcome) });
      continue;
    }
    for (const outcome of runner.run(batch)) committed.push(outcome);
    syncCommitted();
  }
  maybeClose();
}

port.on('message', (m: ToWriter) => {
  take(m);
  pump();
});
post({ t: 'ready' });
