import type BetterSqlite3 from 'better-sqlite3';
import { newerSchemaError } from '../newer-schema.js';
import { migrations, type Migration } from './migrations/index.js';

/**
 * Bring the schema up to date: every migration not yet in schema_migrations runs in its own
 * transaction, recorded with it. Refuses a database written by a newer hookd (unknown versions:
 * NewerSchemaError, before any change).
 * Returns the versions applied.
 */
export function migrate(db: BetterSqlite3.Database, all: readonly Migration[] = migrations): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
  )`);
  const rows = db.prepare('SELECT version, name FROM schema_migrations').all() as Array<{ version: number; name: string }>;
  const applied = new Set(rows.map((r) => r.version));
  const known = new Set(all.map((m) => m.version));
  const unknown = rows.filter((r) => !known.has(r.version));
  if (unknown.length > 0) {
    throw newerSchemaError(`the database ${db.name}`, unknown, Math.max(0, ...known), 'the database');
  }
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  const done: number[] = [];
  for (const m of [...all].sort((a, b) => a.version - b.version)) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      record.run(m.version, m.name, new Date().toISOString());
    }).immediate();
    done.push(m.version);
  }
  return done;
}
