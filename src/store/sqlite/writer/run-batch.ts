import type BetterSqlite3 from 'better-sqlite3';
import type { CompiledOps } from '../ops/index.js';
import { errorInfo, type OpCall, type OpOutcome } from './protocol.js';

export interface BatchRunner {
  run(batch: readonly OpCall[]): OpOutcome[];
}

/**
 * Whether an op's error is its own (a constraint, a value SQLite refuses, a bug in the op), so the
 * op is rolled back alone and the rest of its batch commits. Anything else (SQLITE_FULL,
 * SQLITE_IOERR, SQLITE_NOMEM, …) is the database's trouble and fails the whole batch, even when
 * SQLite only undid the statement: later ops of the batch may depend on the failed one (a runner
 * issues a job's ack right behind its execution records), and must not commit without it.
 */
function isOpOwnError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return true;
  return /^SQLITE_(CONSTRAINT|TOOBIG|MISMATCH|RANGE)/.test(code);
}

/**
 * Group commit: all ops of a batch in ONE transaction (one fsync); an op failing on its own
 * (isOpOwnError: a constraint, bad args) is rolled back alone and the others still commit. When the
 * database fails (SQLITE_FULL, SQLITE_IOERR, …) or COMMIT fails, nothing of the batch is durable
 * and every op fails with that error.
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

  const unknownOp = (name: string) => ({ code: 'UNKNOWN_OP', message: `unknown writer op ${name}` });

  /** Every op in its own savepoint: a failing op is rolled back alone. */
  const runIsolated = (batch: readonly OpCall[]): OpOutcome[] => {
    const out: OpOutcome[] = new Array(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const [id, name, args] = batch[i]!;
      const fn = table[name];
      if (fn === undefined) {
        out[i] = [id, false, unknownOp(name)];
        continue;
      }
      savepoint.run();
      try {
        const value = fn(args);
        release.run();
        out[i] = [id, true, value];
      } catch (err) {
        if (!db.inTransaction || !isOpOwnError(err)) return failAll(batch, err);
        try {
          rollbackTo.run();
          release.run();
        } catch (undoErr) {
          return failAll(batch, undoErr);
        }
        out[i] = [id, false, errorInfo(err)];
      }
    }
    return out;
  };

  /**
   * Ops rarely fail (none throws on purpose), so a batch first runs without savepoints — they cost
   * two statements per op. Undefined if an op threw: the caller rolls back and runs the batch again
   * with runIsolated, so the error stays with that op.
   */
  const runOptimistic = (batch: readonly OpCall[]): OpOutcome[] | undefined => {
    const out: OpOutcome[] = new Array(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const [id, name, args] = batch[i]!;
      const fn = table[name];
      try {
        out[i] = fn === undefined ? [id, false, unknownOp(name)] : [id, true, fn(args)];
      } catch {
        return undefined;
      }
    }
    return out;
  };

  return {
    run(batch) {
      try {
        begin.run();
      } catch (err) {
        return failAll(batch, err);
      }
      let out = runOptimistic(batch);
      if (out === undefined) {
        try {
          if (db.inTransaction) rollback.run();
          begin.run();
        } catch (err) {
          return failAll(batch, err);
        }
        out = runIsolated(batch);
        if (!db.inTransaction) return out; // failAll already rolled back
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
