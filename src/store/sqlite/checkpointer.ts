import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * WAL checkpoints off the writer's critical path. A checkpoint copies WAL frames into the database
 * file and fsyncs it; run by the writer (SQLite's auto-checkpoint) it stalls every commit queued
 * behind it — measured here as half the writer's throughput with synchronous=FULL. The writer
 * connection turns auto-checkpoints off and this thread, on its own connection, runs PASSIVE
 * checkpoints (never blocking the writer or readers) every intervalMs. The thread's code is a few
 * lines of plain JS, evaluated, so it runs the same from sources and from dist.
 *
 * PASSIVE alone never lets the WAL start over under sustained writes: the file restarts from its
 * beginning only when a write transaction begins after a checkpoint that copied every frame, and
 * the writer appends new frames while each checkpoint runs. The WAL then grew without bound
 * (1.6 GB after 44 s of bench:ingest load). So once the WAL holds more than restartBytes, the
 * checkpoint after the PASSIVE one is a RESTART: it waits for a gap between the writer's
 * transactions, copies the few frames appended meanwhile, and holds new writes back (the writer's
 * busy handler waits, a few ms) until the next transaction can start the file over; the file keeps
 * its size (up to journal_size_limit) and is overwritten from the start. A RESTART holds writes back
 * while it waits for readers still reading WAL frames, so it is tried only when the PASSIVE one
 * copied every frame (no old snapshot in the way), waits RESTART_WAIT_MS at most, and after giving
 * up waits RESTART_BACKOFF_MS before the next try: a long read never stalls writes for long.
 */
const CODE = `
const { workerData, parentPort } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { timeout: Math.min(workerData.busyTimeoutMs, workerData.restartWaitMs) });
const frameBytes = db.pragma('page_size', { simple: true }) + 24;
let restartAfter = 0;
const tick = () => {
  try {
    const [passive] = db.pragma('wal_checkpoint(PASSIVE)');
    // Only when PASSIVE copied every frame it saw: otherwise a reader's old snapshot holds frames
    // back, and a RESTART would hold writes back while it waits for that reader.
    if (passive && passive.log * frameBytes > workerData.restartBytes && passive.checkpointed >= passive.log && Date.now() >= restartAfter) {
      const [restart] = db.pragma('wal_checkpoint(RESTART)');
      if (restart && restart.busy === 0) parentPort.postMessage({ restarted: true });
      else restartAfter = Date.now() + workerData.restartBackoffMs;
    }
  } catch (err) { parentPort.postMessage({ error: String(err && err.message || err) }); }
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
  /** Threads started so far (1, plus one per restart after a thread died). */
  readonly starts: number;
  /** Test hook: end the current thread as if it had died. */
  kill(): Promise<void>;
}

/** A thread that died is started again after this, doubling up to RESTART_THREAD_MAX_MS. */
const RESTART_THREAD_MS = 1_000;
const RESTART_THREAD_MAX_MS = 30_000;

/** Longest wait of a RESTART checkpoint (for a gap between writes, then for readers). */
const RESTART_WAIT_MS = 200;
/** After a RESTART that gave up, the next one waits this long. */
const RESTART_BACKOFF_MS = 1_000;

/** WAL bytes past which the checkpointer restarts the WAL (see above). */
export const DEFAULT_WAL_RESTART_BYTES = 16 * 1024 * 1024;

export interface CheckpointerOptions {
  intervalMs?: number;
  busyTimeoutMs?: number;
  /** WAL size that makes the next checkpoint a RESTART. Default DEFAULT_WAL_RESTART_BYTES. */
  restartBytes?: number;
  onError?: (message: string) => void;
  /** A RESTART checkpoint started the WAL over (one that gave up waiting is retried later, unreported). */
  onRestart?: () => void;
}

export function startCheckpointer(path: string, options: CheckpointerOptions = {}): Checkpointer {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const workerData = {
    path,
    driver,
    intervalMs: options.intervalMs ?? 250,
    busyTimeoutMs: options.busyTimeoutMs ?? 5000,
    restartBytes: options.restartBytes ?? DEFAULT_WAL_RESTART_BYTES,
    restartWaitMs: RESTART_WAIT_MS,
    restartBackoffMs: RESTART_BACKOFF_MS,
  };
  let closing: Promise<void> | undefined;
  let starts = 0;
  let current: { worker: Worker; exited: Promise<void> } | undefined;
  let restartTimer: NodeJS.Timeout | undefined;
  let pause = RESTART_THREAD_MS;

  // The writer leaves checkpoints to this thread (wal_autocheckpoint off): a thread that died
  // (its connection failed to open, a crash) must come back, or the WAL grows for good.
  const start = (): void => {
    starts++;
    const worker = new Worker(CODE, { eval: true, workerData });
    worker.unref();
    worker.on('message', (m: { error?: string; restarted?: true; closed?: true }) => {
      if (m.error !== undefined) options.onError?.(m.error);
      if (m.restarted) options.onRestart?.();
      if (m.closed) void worker.terminate();
    });
    worker.on('error', (err) => options.onError?.(err.message));
    // Known from the start: a thread that already died must not leave close() waiting for an
    // 'exit' that has been and gone.
    const exited = new Promise<void>((resolve) =>
      worker.once('exit', () => {
        resolve();
        if (closing !== undefined) return;
        options.onError?.(`the checkpointer thread stopped; starting it again in ${pause} ms`);
        restartTimer = setTimeout(() => {
          restartTimer = undefined;
          if (closing === undefined) start();
        }, pause);
        restartTimer.unref();
        pause = Math.min(RESTART_THREAD_MAX_MS, pause * 2);
      }),
    );
    current = { worker, exited };
  };
  start();

  return {
    get starts() {
      return starts;
    },
    async kill() {
      await current?.worker.terminate();
    },
    close() {
      closing ??= (async () => {
        if (restartTimer) clearTimeout(restartTimer);
        const c = current;
        if (c === undefined) return;
        c.worker.postMessage('close');
        await c.exited;
      })();
      return closing;
    },
  };
}
