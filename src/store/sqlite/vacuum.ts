import { realpathSync, statfsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { BackendLogger } from './logger.js';

/** Room kept on the disk beyond what the compaction needs. */
const SPARE_BYTES = 64 * 1024 * 1024;

export interface VacuumOptions {
  busyTimeoutMs: number;
  logger: BackendLogger;
  /** Bytes free on the disk of `dir` (tests replace it). Default: statfs. */
  diskFree?: (dir: string) => number;
}

/**
 * SQLITE_VACUUM_ON_START: give the pages freed by deletions (the retention purge) back to the
 * disk, before hookd uses the database. Deleted rows leave free pages that later writes reuse, but
 * the file never shrinks: after a flood, it keeps its largest size.
 *
 * SQLite's VACUUM, in place: it builds a compact copy in a temporary file and writes it back
 * through the WAL, which a TRUNCATE checkpoint then copies into the file, cutting it to its new
 * size. In place — the same file, under SQLite's own locking — so that another process that has
 * the database open (a backup, a sqlite3 shell) keeps working on it, and a crash at any point
 * leaves the database whole (the WAL decides), with its mode and owner. (A copy renamed over the
 * file was tried: a connection opened before it and used after it read the old file's pages with
 * the new file's WAL, and corrupted the database.) The temporary file is made beside the database,
 * not in the system's temp directory (often a small tmpfs, or RAM in a container): the disk needs
 * room for the live data twice, the copy and the WAL. Every outcome is logged; nothing here stops
 * the start.
 */
export function vacuumOnStart(path: string, o: VacuumOptions): void {
  const started = performance.now();
  let step = 'open';
  let db: BetterSqlite3.Database | undefined;
  try {
    // SQLite follows a symlink and keeps its -wal beside the real file.
    const file = realpathSync(path);
    const beforeBytes = sizeOf(file) + sizeOf(`${file}-wal`);
    db = new BetterSqlite3(file, { timeout: o.busyTimeoutMs });
    db.pragma('journal_mode = WAL');
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const pages = db.pragma('page_count', { simple: true }) as number;
    const freePages = db.pragma('freelist_count', { simple: true }) as number;
    // A database made before hookd gave purged space back while running (auto_vacuum NONE) is
    // converted by this VACUUM: from then on the housekeeping does it (reclaim-space.ts).
    const convert = db.pragma('auto_vacuum', { simple: true }) !== 2;
    if (freePages === 0 && !convert) {
      o.logger.info({ beforeBytes }, 'SQLITE_VACUUM_ON_START: no free pages to give back; the database is as compact as it gets');
      return;
    }
    const neededBytes = 2 * (pages - freePages) * pageSize;
    const diskFreeBytes = (o.diskFree ?? diskFree)(dirname(file));
    if (diskFreeBytes < neededBytes + SPARE_BYTES) {
      o.logger.warn({ neededBytes, diskFreeBytes }, 'SQLITE_VACUUM_ON_START: not enough free space beside the database to compact it; not compacted');
      return;
    }
    o.logger.info({ beforeBytes, freePagesBytes: freePages * pageSize, convert }, 'SQLITE_VACUUM_ON_START: compacting the database (the start waits for it)');
    if (convert) db.pragma('auto_vacuum = INCREMENTAL');
    step = 'vacuum';
    // A process-wide setting of SQLite's, set while no other connection of hookd's is open, and reset below.
    db.pragma(`temp_store_directory = '${dirname(file).replaceAll("'", "''")}'`);
    db.exec('VACUUM');
    step = 'checkpoint';
    const [cp] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
    const done = { beforeBytes, afterBytes: sizeOf(file) + sizeOf(`${file}-wal`), ms: Math.round(performance.now() - started) };
    if (cp !== undefined && cp.busy === 0) o.logger.info(done, 'SQLITE_VACUUM_ON_START: database compacted');
    else o.logger.info(done, 'SQLITE_VACUUM_ON_START: database compacted; the file shrinks once its WAL is checkpointed (another connection is reading)');
  } catch (err) {
    const e = err as { code?: string; message?: string };
    o.logger.warn({ step, code: e.code, message: e.message }, `SQLITE_VACUUM_ON_START: not compacted (failed at ${step}); the database is as it was`);
  } finally {
    try {
      db?.pragma("temp_store_directory = ''");
    } catch {
      // closing anyway
    }
    db?.close();
  }
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function diskFree(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}
