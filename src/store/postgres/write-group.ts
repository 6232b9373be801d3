import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { isHookdError } from '../../core/errors.js';
import type { PgDatabase } from './database.js';
import { storeClosed, toStoreError } from './errors.js';
import { GroupCommit, type Outcome } from './group-commit.js';

/** SQLSTATE 40P01. */
const DEADLOCK_DETECTED = '40P01';
const DEADLOCK = Symbol('deadlock');
/** A group chosen as a deadlock's victim runs again up to this many times, after a short pause. */
const DEADLOCK_RETRIES = 5;
const DEADLOCK_BACKOFF_MS = 5;

/** One statement of a write group. */
export interface GroupedStatement {
  text: string;
  values: unknown[];
  /** Prepared statement name (fixed texts only). */
  name?: string;
  /** Items with the same key never share a transaction (e.g. the execution they touch). */
  key: string;
}

/**
 * Group commit for small independent writes (execution records): the statements of one event-loop
 * turn, or those arriving while the previous group commits, run on one connection between BEGIN
 * and COMMIT, so they share one WAL flush; each caller resolves with its own result after COMMIT.
 * On this class of hardware a commit costs several times the statement, and a flow run ends with
 * one write per job, so concurrent jobs otherwise pay one flush each.
 *
 * A statement error (a bug or bad data, 500) rolls the transaction back; that statement fails
 * alone and the others run again in a new transaction. A deadlock (another instance's group
 * locking the same executions in another order) runs the whole group again. Any other failure (connection, timeout)
 * fails the whole group with 503: nothing of it committed, or — if the connection broke during
 * COMMIT — it is unknown, as for any single statement.
 */
export class WriteGroup {
  private readonly group: GroupCommit<GroupedStatement, pg.QueryResult>;

  constructor(
    private readonly db: PgDatabase,
    maxItems = 256,
  ) {
    this.group = new GroupCommit((items) => this.run(items), {
      maxItems,
      maxBytes: Number.POSITIVE_INFINITY,
      // Two groups at once (PgDatabase.pipelined has a connection for each): a write that arrives
      // while a group commits starts in the next round trip instead of after that group. The
      // writes of one execution still commit in order (an item waits while its key is in flight).
      maxInflight: 2,
    });
  }

  get counters(): { readonly batches: number; readonly items: number } {
    return this.group.counters;
  }

  query<R extends object = Record<string, unknown>>(
    text: string,
    values: unknown[],
    key: string,
    name?: string,
  ): Promise<pg.QueryResult<R & pg.QueryResultRow>> {
    if (this.db.closed) return Promise.reject(storeClosed());
    const stmt: GroupedStatement = { text, values, key };
    if (name !== undefined) stmt.name = name;
    return this.group.submit(stmt, key, 0) as Promise<pg.QueryResult<R & pg.QueryResultRow>>;
  }

  drain(): Promise<void> {
    return this.group.drain();
  }

  private async run(items: readonly GroupedStatement[]): Promise<Array<Outcome<pg.QueryResult>>> {
    // One statement: no transaction block needed (autocommit is the same commit).
    if (items.length === 1) {
      const s = items[0]!;
      try {
        return [{ ok: true, value: await this.db.query(s.text, s.values, s.name) }];
      } catch (err) {
        return [{ ok: false, error: err }];
      }
    }
    const outcomes: Array<Outcome<pg.QueryResult> | undefined> = new Array(items.length);
    // In key order (the execution a statement writes): two instances' groups that touch the same
    // rows mostly lock them in one order, rather than wait on each other in a cycle (a deadlock,
    // seen when an instance that stalled wrote late to executions another one was finishing); the
    // cycles left are run again below. Keys are distinct within a group.
    let pending = items.map((_, i) => i).sort((a, b) => (items[a]!.key < items[b]!.key ? -1 : items[a]!.key > items[b]!.key ? 1 : 0));
    let deadlocks = 0;
    while (pending.length > 0) {
      const failed = await this.attempt(items, pending, outcomes);
      if (failed === undefined) break;
      if (failed === DEADLOCK) {
        // Chosen as a deadlock's victim: PostgreSQL rolled all of it back, so all of it runs
        // again (what its manual advises). Key order cannot prevent every cycle: begin() is keyed
        // by request id, the other writes by execution id, and the two orders differ.
        if (++deadlocks > DEADLOCK_RETRIES) throw toStoreError(new Error(`write group: deadlocked ${deadlocks} times in a row`));
        await delay(DEADLOCK_BACKOFF_MS * deadlocks * (0.5 + Math.random()));
        continue;
      }
      outcomes[failed.index] = { ok: false, error: failed.error };
      pending = pending.filter((i) => i !== failed.index);
    }
    return outcomes.map((o) => o ?? { ok: false, error: new Error('write group: statement not run') });
  }

  /**
   * Run `indexes` in one transaction. Returns the statement error that aborted it (the caller drops
   * that statement and tries again), or undefined once committed. Other errors reject.
   *
   * BEGIN, the statements and COMMIT go out at once on a pipelined connection and are answered in
   * order: one round trip for the group, where awaiting each statement cost one round trip per
   * statement (a group of 50 took 4 s with the database 40 ms away). A statement that fails aborts
   * the transaction: the statements after it fail as well (25P02), and the COMMIT rolls back.
   */
  private async attempt(
    items: readonly GroupedStatement[],
    indexes: readonly number[],
    outcomes: Array<Outcome<pg.QueryResult> | undefined>,
  ): Promise<{ index: number; error: unknown } | typeof DEADLOCK | undefined> {
    if (this.db.closed) throw storeClosed();
    let client: pg.PoolClient;
    try {
      client = await this.db.pipelined.connect();
    } catch (err) {
      throw toStoreError(err);
    }
    let broken: unknown;
    // A connection error between two statements would otherwise be an unhandled 'error' event.
    const onError = (err: Error): void => {
      broken ??= err;
    };
    client.on('error', onError);
    try {
      const begin = client.query('BEGIN');
      const statements = indexes.map((i) => {
        const s = items[i]!;
        return client.query(s.name === undefined ? { text: s.text, values: s.values } : { name: s.name, text: s.text, values: s.values });
      });
      const commit = client.query('COMMIT');
      const [began, ran, committed] = await Promise.all([settle(begin), Promise.all(statements.map(settle)), settle(commit)]);
      // Not an answer of the server (a lost connection, a client-side timeout): the connection is done.
      const lost = [began, ...ran, committed].find((r) => !r.ok && !(r.error instanceof pg.DatabaseError));
      if (lost !== undefined && !lost.ok) throw lost.error;
      if (!began.ok) throw began.error;
      const failed = ran.findIndex((r) => !r.ok);
      if (failed >= 0) {
        const error = (ran[failed] as { ok: false; error: unknown }).error;
        if ((error as { code?: unknown }).code === DEADLOCK_DETECTED) return DEADLOCK;
        const mapped = toStoreError(error);
        if (!(isHookdError(mapped) && mapped.code === 'INTERNAL')) throw error;
        return { index: indexes[failed]!, error: mapped };
      }
      if (!committed.ok) throw committed.error;
      if (committed.value.command !== 'COMMIT') throw new Error(`write group: COMMIT answered ${committed.value.command}`);
      ran.forEach((r, k) => {
        if (r.ok) outcomes[indexes[k]!] = { ok: true, value: r.value };
      });
      return undefined;
    } catch (err) {
      broken ??= err instanceof pg.DatabaseError ? undefined : err;
      throw toStoreError(err);
    } finally {
      client.removeListener('error', onError);
      // A connection that failed mid-transaction is not given back to the pool.
      client.release(broken === undefined ? undefined : broken instanceof Error ? broken : true);
    }
  }
}

/** A promise's outcome, in group-commit.ts's shape: never rejects. */
function settle<T>(p: Promise<T>): Promise<Outcome<T>> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}
