import BetterSqlite3 from 'better-sqlite3';

export const DEFAULT_BUSY_TIMEOUT_MS = 5_000;

/**
 * The writer connection: WAL (readers never block the writer nor each other). Every write is fsynced
 * before it is answered (by the writer thread, pipelined), so a resolved write survives a power cut.
 */
export function openWriterConnection(
  path: string,
  busyTimeoutMs = DEFAULT_BUSY_TIMEOUT_MS,
): BetterSqlite3.Database {
  const db = new BetterSqlite3(path, { timeout: busyTimeoutMs });
  try {
    // A new database keeps a map of its pages, so that the retention purge's free pages can be
    // given back to the disk while hookd runs (RequestStore.reclaimSpace). It takes effect only
    // before the first table exists: a database made before stays as it is until
    // SQLITE_VACUUM_ON_START converts it (vacuum.ts).
    db.pragma('auto_vacuum = INCREMENTAL');
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (String(mode).toLowerCase() !== 'wal') throw new Error(`cannot switch ${path} to WAL (got ${String(mode)})`);
    // NORMAL: COMMIT does not wait for the disk; the writer thread fsyncs the WAL itself before it
    // answers any op (pipelined durability, see writer-thread.ts). Same guarantee as FULL.
    db.pragma('synchronous = NORMAL');
    // Checkpoints run on their own thread (checkpointer.ts), not inside the writer's commits.
    db.pragma('wal_autocheckpoint = 0');
    db.pragma('foreign_keys = OFF');
    db.pragma('temp_store = MEMORY');
    db.pragma('cache_size = -32000'); // KiB
    // Keep the WAL from growing without bound after bursts (bytes kept after a checkpoint).
    db.pragma('journal_size_limit = 67108864');
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** The main thread's read-only connection: WAL readers see every commit finished before they start. */
export function openReaderConnection(
  path: string,
  busyTimeoutMs = DEFAULT_BUSY_TIMEOUT_MS,
): BetterSqlite3.Database {
  const db = new BetterSqlite3(path, { readonly: true, fileMustExist: true, timeout: busyTimeoutMs });
  db.pragma('cache_size = -16000');
  return db;
}
