import { statSync } from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';

export interface VacuumResult {
  /** The database file and its WAL before, and after. */
  beforeBytes: number;
  afterBytes: number;
  ms: number;
}

/**
 * Rebuild the database file without its free pages (SQLite's VACUUM), before hookd starts using
 * it. Deleting rows (the retention purge) frees pages that later writes reuse, but the file never
 * gives them back to the disk: after a flood, it keeps its largest size. VACUUM writes a compact
 * copy through the WAL (so it needs up to the database's size again in free space while it runs)
 * and a TRUNCATE checkpoint copies it back into the file, fsynced, and empties the WAL. Run on its
 * own connection while no other is open (start-up, the file's lock held): it blocks, which is why
 * it is a start-up option (SQLITE_VACUUM_ON_START) and not something done while serving.
 */
export function vacuumDatabase(path: string, busyTimeoutMs: number): VacuumResult {
  const size = (): number => fileSize(path) + fileSize(`${path}-wal`);
  const started = performance.now();
  const beforeBytes = size();
  const db = new BetterSqlite3(path, { timeout: busyTimeoutMs });
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('VACUUM');
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
  return { beforeBytes, afterBytes: size(), ms: performance.now() - started };
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
