import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * WAL checkpoints off the writer's critical path. A checkpoint copies WAL frames into the database
 * file and fsyncs it; run by the writer (SQLite's auto-checkpoint) it stalls every commit queued
 * behind it — measured here as half the writer's throughput with synchronous=FULL. The writer
 * connection turns auto-checkpoints off and this thread, on its own connection, runs PASSIVE
 * checkpoints (never blocking the writer or readers) every intervalMs. The thread's code is a few
 * lines of plain JS, evaluated, so it runs the same from sources and from dist.
 */
const CODE = `
const { workerData, parentPort } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs });
const tick = () => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch (err) { parentPort.postMessage({ error: String(err && err.message || err) }); }
};
const timer = setInterval(tick, workerData.intervalMs);
parentPort.on('message', () => {
  clearInterval(timer);
  tick();
  db.close();
  parentPort.postMessage({ closed: true });
});
`;

export interface Checkpointer {
  close(): Promise<void>;
}

export function startCheckpointer(
  path: string,
  options: { intervalMs?: number; busyTimeoutMs?: number; onError?: (message: string) => void } = {},
): Checkpointer {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(CODE, {
    eval: true,
    workerData: { path, driver, intervalMs: options.intervalMs ?? 250, busyTimeoutMs: options.busyTimeoutMs ?? 5000 },
  });
  worker.unref();
  worker.on('message', (m: { error?: string }) => {
    if (m.error !== undefined) options.onError?.(m.error);
  });
  worker.on('error', (err) => options.onError?.(err.message));
  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= new Promise<void>((resolve) => {
        worker.once('exit', () => resolve());
        worker.once('message', () => void worker.terminate());
        worker.postMessage('close');
      });
      return closing;
    },
  };
}
