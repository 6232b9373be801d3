/**
 * The SQLite writer thread. better-sqlite3 is synchronous and COMMIT waits for fsync, so all writes
 * run here, off the main event loop. Group commit: every op that arrived while the previous
 * transaction was committing is drained (receiveMessageOnPort) into the next transaction.
 */
import { closeSync, fdatasync, openSync } from 'node:fs';
import { receiveMessageOnPort, workerData } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';
import { openWriterConnection } from '../connection.js';
import { migrate } from '../migrate.js';
import { compileOps } from '../ops/index.js';
import { createBatchRunner, type BatchRunner } from './run-batch.js';
import { errorInfo, type FromWriter, type OpCall, type OpOutcome, type ToWriter, type WriterInit } from './protocol.js';

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
 * fdatasync, as SQLite itself syncs on Linux: it flushes the data and the metadata needed to read
 * it back (a grown file's size) but not timestamps, which would cost a journal commit each time.
 */
const walPath = `${init.path}-wal`;
let walFd: number | undefined;
let committed: OpOutcome[] = [];
let syncing = false;

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
  fdatasync(walFd, (err) => {
    syncing = false;
    post({ t: 'results', r: err ? covered.map(([id]) => [id, false, errorInfo(err)] as OpOutcome) : covered });
    syncCommitted(); // batches committed while this fsync ran
    maybeClose();
  });
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
  for (const op of m.ops) queue.push(op);
}

function pump(): void {
  for (;;) {
    // Everything already waiting on the port joins this transaction.
    for (let r = receiveMessageOnPort(port); r !== undefined; r = receiveMessageOnPort(port)) take(r.message as ToWriter);
    if (queue.length === 0) break;
    const batch = queue.length > MAX_OPS_PER_TRANSACTION ? queue.splice(0, MAX_OPS_PER_TRANSACTION) : queue.splice(0);
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
