import type BetterSqlite3 from 'better-sqlite3';
import { unavailable } from '../../core/errors.js';
import { openReaderConnection } from './connection.js';
import { storeClosed } from './errors.js';

/**
 * Reads on the main thread: a read-only connection (no fsync, never blocked by the writer in WAL
 * mode), statements prepared once and cached by SQL text. Failures surface as 503.
 */
export class Reader {
  private db: BetterSqlite3.Database | undefined;
  private readonly statements = new Map<string, BetterSqlite3.Statement>();

  constructor(path: string, busyTimeoutMs?: number) {
    this.db = openReaderConnection(path, busyTimeoutMs);
  }

  /** Run `fn` with a cached statement for `sql`; SQLite errors become 503 HookdErrors. */
  read<T>(sql: string, fn: (stmt: BetterSqlite3.Statement) => T): T {
    const db = this.db;
    if (db === undefined) throw storeClosed();
    try {
      let stmt = this.statements.get(sql);
      if (stmt === undefined) {
        stmt = db.prepare(sql);
        this.statements.set(sql, stmt);
      }
      return fn(stmt);
    } catch (err) {
      throw unavailable('store', err);
    }
  }

  close(): void {
    const db = this.db;
    this.db = undefined;
    this.statements.clear();
    db?.close();
  }
}
