/**
 * The SQLite writer thread. better-sqlite3 is synchronous and COMMIT waits for fsync, so all writes
 * run here, off the main event loop. Group commit: every op that arrived while the previous
 * transaction was committing is drained (receiveMessageOnPort) into the next transaction.
 */
import { receiveMessageOnPort, workerData } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';
import { openWriterConnection } from '../connection.js';
import { migrate } from '../migrate.js';
import { compileOps } from '../ops/index.js';
import { createBatchRunner, type BatchRunner } from './run-batch.js';
import { errorInfo, type FromWriter, type OpCall, type ToWriter, type WriterInit } from './protocol.js';

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
    post({ t: 'results', r: runner.run(batch) });
  }
  if (closing) {
    db.close();
    post({ t: 'closed' });
    port.close();
  }
}

port.on('message', (m: ToWriter) => {
  take(m);
  pump();
});
post({ t: 'ready' });
