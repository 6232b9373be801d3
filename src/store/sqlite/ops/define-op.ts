import type BetterSqlite3 from 'better-sqlite3';

/** What an op gets when the writer thread compiles it (once per connection). */
export interface OpContext {
  readonly db: BetterSqlite3.Database;
  /** Lease length of the embedded queue, ms. */
  readonly leaseMs: number;
}

/**
 * One SQL operation run by the writer thread inside the group-commit transaction (in its own
 * savepoint). The factory prepares statements once; the returned function runs one call.
 * Args and result cross the thread boundary: structured-cloneable plain data only.
 */
export type Op<A, R> = (ctx: OpContext) => (args: A) => R;

export { clip } from '../../rows.js';
