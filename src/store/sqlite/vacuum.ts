import { chmodSync, closeSync, fsyncSync, openSync, realpathSync, renameSync, rmSync, statfsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { BackendLogger } from './logger.js';

/** Room kept on the disk beyond the compact copy's size. */
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
 * `VACUUM INTO` a compact copy beside the file (not SQLite's plain VACUUM, which builds its copy in
 * the system's temp directory — often a small tmpfs, or RAM in a container — and then writes every
 * page again through the WAL), fsynced, then renamed over the file. The WAL is checkpointed into the
 * file first, so the copy holds every commit; if another connection holds the database (a backup,
 * a sqlite3 shell) that cannot be done, and nothing is changed. Runs with the file's lock held and
 * no other connection of hookd's open. A crash at any point leaves the old file or the new one, each
 * whole; a leftover copy is removed at the next start. Every outcome is logged; a failure never
 * stops the start.
 */
export function vacuumOnStart(path: string, o: VacuumOptions): void {
  // SQLite follows a symlink and keeps its -wal beside the real file: so does this.
  const file = realpathSync(path);
  const copy = `${file}.compact`;
  rmSync(copy, { force: true }); // an interrupted start's
  const started = performance.now();
  const beforeBytes = sizeOf(file) + sizeOf(`${file}-wal`);
  let step = 'open';
  let db: BetterSqlite3.Database | undefined = new BetterSqlite3(file, { timeout: o.busyTimeoutMs });
  try {
    db.pragma('journal_mode = WAL');
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const pages = db.pragma('page_count', { simple: true }) as number;
    const freePages = db.pragma('freelist_count', { simple: true }) as number;
    if (freePages === 0) {
      o.logger.info({ bytes: beforeBytes }, 'SQLITE_VACUUM_ON_START: no free pages to give back; the database is as compact as it gets');
      return;
    }
    const neededBytes = (pages - freePages) * pageSize;
    const freeBytes = (o.diskFree ?? diskFree)(dirname(file));
    if (freeBytes < neededBytes + SPARE_BYTES) {
      o.logger.warn({ neededBytes, freeBytes }, 'SQLITE_VACUUM_ON_START: not enough free space beside the database for its compact copy; not compacted');
      return;
    }
    o.logger.info({ bytes: beforeBytes, freeBytes: freePages * pageSize }, 'SQLITE_VACUUM_ON_START: compacting the database (the start waits for it)');
    step = 'checkpoint';
    const [cp] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
    if (cp === undefined || cp.busy !== 0) {
      o.logger.warn({}, 'SQLITE_VACUUM_ON_START: another connection holds the database (a backup, a sqlite3 shell?): not compacted');
      return;
    }
    step = 'copy';
    // Created first with the database's own mode: the copy holds every stored request.
    closeSync(openSync(copy, 'wx', statSync(file).mode & 0o777));
    chmodSync(copy, statSync(file).mode & 0o777);
    db.prepare('VACUUM INTO ?').run(copy);
    db.close();
    db = undefined;
    step = 'sync';
    fsyncFile(copy);
    step = 'swap';
    renameSync(copy, file);
    // The emptied WAL and its index belonged to the old file.
    rmSync(`${file}-wal`, { force: true });
    rmSync(`${file}-shm`, { force: true });
    fsyncFile(dirname(file));
    o.logger.info({ beforeBytes, afterBytes: sizeOf(file), ms: Math.round(performance.now() - started) }, 'SQLITE_VACUUM_ON_START: database compacted');
  } catch (err) {
    rmSync(copy, { force: true });
    const e = err as { code?: string; message?: string };
    o.logger.warn({ step, code: e.code, message: e.message }, `SQLITE_VACUUM_ON_START: not compacted (failed at ${step}); the database is as it was`);
  } finally {
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

function fsyncFile(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
