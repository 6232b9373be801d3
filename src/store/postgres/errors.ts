import { E, HookdError, isHookdError, unavailable } from '../../core/errors.js';

/**
 * SQLSTATE classes that mean "this statement is wrong for this data", not "the database cannot
 * write now": retrying cannot help, so they are bugs (500), like SQLite constraint errors.
 * 22 data exception, 23 integrity constraint, 42 syntax/undefined object, 54 program limit,
 * 0A feature not supported.
 */
const STATEMENT_CLASSES = new Set(['22', '23', '42', '54', '0A']);

function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * A failed query as the caller sees it. Statement errors are 500 (details kept for the log).
 * Everything else means PostgreSQL cannot commit right now: connection refused or lost, pool
 * timeout, admin shutdown (57P01), statement timeout (57014), deadlock or serialization failure
 * (40xxx), disk full (53100), read-only standby after a failover (25006)… → 503 with Retry-After.
 */
export function toStoreError(err: unknown): HookdError {
  if (isHookdError(err)) return err;
  const state = sqlState(err);
  const message = err instanceof Error ? err.message : String(err);
  if (state !== undefined && STATEMENT_CLASSES.has(state.slice(0, 2))) {
    return new HookdError(E.INTERNAL).withDetails({ code: state, message });
  }
  return unavailable('store', new Error(state ? `${state}: ${message}` : message));
}

export function storeClosed(): HookdError {
  return unavailable('store', new Error('the PostgreSQL store is closed'));
}

/** A statement error (bad data, a bug: toStoreError maps it to INTERNAL), as opposed to the database being unavailable. */
export function isStatementError(err: unknown): boolean {
  return isHookdError(err) && err.code === 'INTERNAL';
}
