import { chownSync, closeSync, fsyncSync, lstatSync, openSync, realpathSync, renameSync, rmSync, statfsSync, statSync } from 'node:fs';
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

/** The compact copy's name: beside the real file (a symlinked database is compacted where it lives). */
const copyOf = (file: string): string => `${file}.compact`;

/**
 * A copy left by a start that was interrupted while compacting (it holds requests retention may
 * have purged since): removed at every start, whether SQLITE_VACUUM_ON_START is on or not. Only a
 * file or a symlink: anything else there is the operator's, and is left (and said so).
 */
export function removeLeftoverCopy(path: string, logger: BackendLogger): boolean {
  let copy = '';
  let kind: 'none' | 'file' | 'other' = 'none';
  try {
    copy = copyOf(realpathSync(path));
    const s = lstatSync(copy);
    kind = s.isFile() || s.isSymbolicLink() ? 'file' : 'other';
  } catch {
    // not there
  }
  if (kind === 'file') {
    try {
      rmSync(copy, { force: true });
      logger.warn({ file: copy }, 'removed the compact copy an interrupted SQLITE_VACUUM_ON_START left');
    } catch (err) {
      logger.warn({ file: copy, code: (err as { code?: string }).code }, 'the compact copy an interrupted SQLITE_VACUUM_ON_START left could not be removed');
      return false;
    }
  }
  if (kind === 'other') logger.warn({ file: copy }, 'something that is not a file is where SQLITE_VACUUM_ON_START writes its copy: compaction is skipped until it is removed');
  return kind !== 'other';
}

/**
 * SQLITE_VACUUM_ON_START: give the pages freed by deletions (the retention purge) back to the
 * disk, before hookd uses the database. Deleted rows leave free pages that later writes reuse, but
 * the file never shrinks: after a flood, it keeps its largest size.
 *
 * `VACUUM INTO` a compact copy beside the file (not SQLite's plain VACUUM, which builds its copy in
 * the system's temp directory — often a small tmpfs, or RAM in a container — and then writes every
 * page again through the WAL), fsynced, then renamed over the file. The connection takes the
 * database in EXCLUSIVE locking mode first: if any other connection has it open (a backup, a
 * sqlite3 shell), nothing is done — a write of theirs after the copy would be lost with the old
 * file. The WAL is checkpointed into the file before the copy, which so holds every commit. The
 * copy gets the file's mode and owner (or nothing is done). A crash at any point leaves the old
 * file or the new one, each whole. Every outcome is logged; nothing here stops the start.
 */
export function vacuumOnStart(path: string, o: VacuumOptions): void {
  const started = performance.now();
  let step = 'open';
  let db: BetterSqlite3.Database | undefined;
  let file = path;
  let copy: string | undefined;
  let replaced = false;
  try {
    file = realpathSync(path);
    if (!removeLeftoverCopy(path, o.logger)) return;
    const beforeBytes = sizeOf(file) + sizeOf(`${file}-wal`);
    db = new BetterSqlite3(file, { timeout: o.busyTimeoutMs });
    step = 'lock';
    try {
      // Before the first access in WAL mode: no shared memory, and the lock is never released.
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.exec('BEGIN EXCLUSIVE; COMMIT');
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY')) {
        o.logger.warn({}, 'SQLITE_VACUUM_ON_START: another connection has the database open (a backup, a sqlite3 shell?): not compacted');
        return;
      }
      throw err;
    }
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const pages = db.pragma('page_count', { simple: true }) as number;
    const freePages = db.pragma('freelist_count', { simple: true }) as number;
    if (freePages === 0) {
      o.logger.info({ beforeBytes }, 'SQLITE_VACUUM_ON_START: no free pages to give back; the database is as compact as it gets');
      return;
    }
    const neededBytes = (pages - freePages) * pageSize;
    const diskFreeBytes = (o.diskFree ?? diskFree)(dirname(file));
    if (diskFreeBytes < neededBytes + SPARE_BYTES) {
      o.logger.warn({ neededBytes, diskFreeBytes }, 'SQLITE_VACUUM_ON_START: not enough free space beside the database for its compact copy; not compacted');
      return;
    }
    o.logger.info({ beforeBytes, freePagesBytes: freePages * pageSize }, 'SQLITE_VACUUM_ON_START: compacting the database (the start waits for it)');
    step = 'checkpoint';
    const [cp] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
    if (cp === undefined || cp.busy !== 0) {
      o.logger.warn({}, 'SQLITE_VACUUM_ON_START: the WAL could not be checkpointed: not compacted');
      return;
    }
    step = 'copy';
    copy = copyOf(file);
    // Created first as the database is — mode and owner — since it holds every stored request.
    const s = statSync(file);
    closeSync(openSync(copy, 'wx', s.mode & 0o777));
    try {
      chownSync(copy, s.uid, s.gid);
    } catch (err) {
      o.logger.warn({ code: (err as { code?: string }).code }, "SQLITE_VACUUM_ON_START: the compact copy cannot be given the database file's owner: not compacted");
      return;
    }
    db.prepare('VACUUM INTO ?').run(copy);
    db.close();
    db = undefined;
    step = 'sync';
    fsyncFile(copy);
    step = 'swap';
    renameSync(copy, file);
    replaced = true;
    copy = undefined;
    step = 'cleanup';
    // The emptied WAL and its index belonged to the old file.
    rmSync(`${file}-wal`, { force: true });
    rmSync(`${file}-shm`, { force: true });
    fsyncFile(dirname(file));
    o.logger.info({ beforeBytes, afterBytes: sizeOf(file), ms: Math.round(performance.now() - started) }, 'SQLITE_VACUUM_ON_START: database compacted');
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (replaced) {
      o.logger.warn({ step, code: e.code, message: e.message }, 'SQLITE_VACUUM_ON_START: database compacted, but cleaning up after it failed');
    } else {
      o.logger.warn({ step, code: e.code, message: e.message }, `SQLITE_VACUUM_ON_START: not compacted (failed at ${step}); the database is as it was`);
    }
  } finally {
    db?.close();
    if (copy !== undefined) rmSync(copy, { force: true });
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
