import BetterSqlite3 from 'better-sqlite3';

/** Held while this process owns a database file; released by close() or when the process dies. */
export interface FileLock {
  readonly path: string;
  close(): void;
}

/**
 * One hookd process per database file. The lock is an exclusive SQLite lock on a side file
 * (`<db>.lock`), taken by a connection in `locking_mode = EXCLUSIVE` that keeps it until it closes.
 * The operating system drops it when the process dies, however it dies: a stale lock cannot stay
 * behind, so whoever holds it knows every job lease in the file was given by itself or by a process
 * that is gone (SqliteBackend releases those at start-up instead of waiting for them to expire).
 */
export function lockDatabaseFile(dbPath: string): FileLock {
  const path = `${dbPath}.lock`;
  const db = new BetterSqlite3(path, { timeout: 0 });
  try {
    db.pragma('journal_mode = DELETE');
    db.pragma('locking_mode = EXCLUSIVE');
    // The first write transaction takes the exclusive lock; EXCLUSIVE mode keeps it after COMMIT.
    db.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS holder (pid INTEGER); COMMIT');
  } catch (err) {
    db.close();
    const code = (err as { code?: unknown }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
      throw new Error(`${dbPath} is in use by another hookd process (one process per DATA_DIR; use DATABASE_URL to run several)`, { cause: err });
    }
    throw err;
  }
  return {
    path,
    close: () => {
      if (db.open) db.close();
    },
  };
}
