import { E, HookdError, unavailable } from '../../core/errors.js';
import type { WriterErrorInfo } from './writer/protocol.js';

/**
 * A write that failed in the writer thread, as the caller sees it. A constraint violation is a bug
 * (accept and begin handle their conflicts explicitly): 500. Everything else means the store cannot
 * commit right now (full disk, I/O error, lock timeout): 503 with Retry-After.
 */
export function toStoreError(info: WriterErrorInfo): HookdError {
  if (info.code.startsWith('SQLITE_CONSTRAINT')) {
    return new HookdError(E.INTERNAL).withDetails({ code: info.code, message: info.message });
  }
  return unavailable('store', new Error(`${info.code}: ${info.message}`));
}

export function storeClosed(): HookdError {
  return unavailable('store', new Error('the SQLite store is closed'));
}
