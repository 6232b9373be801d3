import type BetterSqlite3 from 'better-sqlite3';
import type { CompiledOps } from '../ops/index.js';
import { errorInfo, type OpCall, type OpOutcome } from './protocol.js';

export interface BatchRunner {
  run(batch: readonly OpCall[]): OpOutcome[];
}

/**
 * Group commit: all ops of a batch in ONE transaction (one fsync), each inside its own SAVEPOINT so
 * a failing op (constraint, bad args) is rolled back alone and the others still commit. When SQLite
 * itself abandons the transaction (SQLITE_FULL, SQLITE_IOERR, …) or COMMIT fails, nothing of the
 * batch is durable and every op fails with that error.
 */
export function createBatchRunner(db: BetterSqlite3.Database, ops: CompiledOps): BatchRunner {
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');
  const savepoint = db.prepare('SAVEPOINT op');
  const release = db.prepare('RELEASE op');
  const rollbackTo = db.prepare('ROLLBACK TO op');
  const table = ops as unknown as Record<string, ((args: unknown) => unknown) | undefined>;

  const failAll = (batch: readonly OpCall[], err: unknown): OpOutcome[] => {
    if (db.inTransaction) {
      try {
        rollback.run();
      } catch {
        // Already rolled back by SQLite; nothing left to undo.
      }
    }
    const info = errorInfo(err);
    return batch.map(([id]) => [id, false, info]);
  };

  return {
    run(batch) {
      try {
        begin.run();
      } catch (err) {
        return failAll(batch, err);
      }
      const out: OpOutcome[] = new Array(batch.length);
      for (let i = 0; i < batch.length; i++) {
        const [id, name, args] = batch[i]!;
        const fn = table[name];
        if (fn === undefined) {
          out[i] = [id, false, { code: 'UNKNOWN_OP', message: `unknown writer op ${name}` }];
          continue;
        }
        savepoint.run();
        try {
          const value = fn(args);
          release.run();
          out[i] = [id, true, value];
        } catch (err) {
          if (!db.inTransaction) return failAll(batch, err);
          try {
            rollbackTo.run();
            release.run();
          } catch (undoErr) {
            return failAll(batch, undoErr);
          }
          out[i] = [id, false, errorInfo(err)];
        }
      }
      try {
        commit.run();
      } catch (err) {
        return failAll(batch, err);
      }
      return out;
    },
  };
}
