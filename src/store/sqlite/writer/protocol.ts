import type { MessagePort } from 'node:worker_threads';

/**
 * Messages between the main thread (WriterClient) and the SQLite writer thread. One `ops` message
 * carries every op the main thread collected in one event-loop turn; one `results` message carries
 * the outcome of every op of one transaction (a group commit may span several `ops` messages).
 */
export interface WriterInit {
  path: string;
  leaseMs: number;
  busyTimeoutMs: number;
  /** Extra PRAGMAs for the writer connection, run after the defaults and migrations. */
  pragmas: string[];
  /** The one-process lock's file (file-lock.ts), watched like the database file: deleted, another process could open the database. */
  lockPath?: string;
  port: MessagePort;
}

export type OpCall = [id: number, name: string, args: unknown];

export interface WriterErrorInfo {
  /** better-sqlite3's SqliteError code (SQLITE_FULL, SQLITE_BUSY, …) or the JS error name. */
  code: string;
  message: string;
}

export type OpOutcome = [id: number, ok: true, value: unknown] | [id: number, ok: false, error: WriterErrorInfo];

export type ToWriter =
  | {
      t: 'ops';
      ops: OpCall[];
      /** Test hook: the writer throws on receipt, dying with these ops unanswered. */
      crash?: true;
      /** Test hook: the writer's next fsync of the WAL reports EIO. */
      failNextSync?: true;
    }
  | { t: 'close' };

export type FromWriter =
  | { t: 'ready' }
  | { t: 'fatal'; error: WriterErrorInfo }
  /** syncMs: how long the fsync that made these durable took (absent when results carry no fsync). */
  | { t: 'results'; r: OpOutcome[]; syncMs?: number }
  /** An fsync of the WAL failed: writes fail until `syncRecovered` (writer-thread.ts). */
  | { t: 'syncFailed'; error: WriterErrorInfo }
  /** A checkpoint made the whole WAL durable in the database file after a failed fsync. */
  | { t: 'syncRecovered' }
  /** The database file was deleted or replaced under hookd: every write fails until a restart. */
  | { t: 'fileGone'; error: WriterErrorInfo }
  | { t: 'closed' };

export function errorInfo(err: unknown): WriterErrorInfo {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { code: typeof code === 'string' ? code : err.name, message: err.message };
  }
  return { code: 'ERROR', message: String(err) };
}
