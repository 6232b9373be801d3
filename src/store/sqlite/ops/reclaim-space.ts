import type { Op } from './define-op.js';

export interface ReclaimSpaceResult {
  /** Free pages given back to the disk by this call (the file shrinks at the next checkpoint). */
  freedPages: number;
  /** Free pages left in the file: call again while there are. */
  freePagesLeft: number;
  pageSize: number;
  /** False: the database predates incremental auto-vacuum (SQLITE_VACUUM_ON_START converts it). */
  incremental: boolean;
}

/**
 * Up to `maxPages` of the file's free pages (rows the retention purge deleted) moved to its end and
 * cut off: SQLite's incremental vacuum, a write like any other (group commit, fsync), bounded so
 * that the commits of requests arriving meanwhile never wait long behind it.
 */
export const reclaimSpace: Op<{ maxPages: number }, ReclaimSpaceResult> = ({ db }) => {
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const freePages = () => db.pragma('freelist_count', { simple: true }) as number;
  return (a) => {
    const incremental = db.pragma('auto_vacuum', { simple: true }) === 2;
    const before = freePages();
    if (!incremental || before === 0) return { freedPages: 0, freePagesLeft: before, pageSize, incremental };
    db.pragma(`incremental_vacuum(${Math.max(1, Math.floor(a.maxPages))})`);
    const after = freePages();
    return { freedPages: before - after, freePagesLeft: after, pageSize, incremental };
  };
};
