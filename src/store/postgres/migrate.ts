import pg from 'pg';
import { unavailable } from '../../core/errors.js';
import { advisoryLockKey, LOCK_NAMESPACE } from './advisory-locks.js';
import { quoteIdent, type PgDatabase } from './database.js';
import { NewerSchemaError, newerSchemaError } from '../newer-schema.js';
import { migrations, type Migration } from './migrations/index.js';


/**
 * Bring the schema up to date. Several hookd instances may start together: each takes a session
 * advisory lock per schema first, so exactly one applies the missing migrations while the others
 * wait, then find nothing left to do. Each migration runs in its own transaction together with its
 * schema_migrations row (PostgreSQL DDL is transactional). Refuses a schema written by a newer
 * hookd (unknown versions: NewerSchemaError, not a 503). Returns the versions applied. Uses a dedicated connection without
 * statement_timeout: a long migration, or waiting for another instance's, is not an error.
 */
export async function migrate(db: PgDatabase, all: readonly Migration[] = migrations): Promise<number[]> {
  const client = new pg.Client({ ...db.clientConfig, statement_timeout: 0, query_timeout: 0 });
  client.on('error', (err) => db.logger.warn({ err }, 'postgres: migration connection lost'));
  try {
    await client.connect();
  } catch (err) {
    throw unavailable('store', err);
  }
  const schema = quoteIdent(db.schema);
  const key = advisoryLockKey('migrate', db.schema);
  try {
    await client.query('SELECT pg_advisory_lock($1, $2)', [LOCK_NAMESPACE, key]);
    try {
      // Checked first: CREATE SCHEMA IF NOT EXISTS still needs CREATE on the database.
      const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [db.schema]);
      if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${schema}`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${db.t.migrations} (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const { rows } = await client.query<{ version: number; name: string }>(`SELECT version, name FROM ${db.t.migrations}`);
      const applied = new Set(rows.map((r) => r.version));
      const known = new Set(all.map((m) => m.version));
      const unknown = rows.filter((r) => !known.has(r.version));
      if (unknown.length > 0) {
        throw newerSchemaError(`schema ${db.schema}`, unknown, Math.max(0, ...known), 'the database');
      }
      const done: number[] = [];
      for (const m of [...all].sort((a, b) => a.version - b.version)) {
        if (applied.has(m.version)) continue;
        await client.query('BEGIN');
        try {
          await client.query(`SET LOCAL search_path TO ${schema}`);
          await client.query(m.sql);
          await client.query(`INSERT INTO ${db.t.migrations} (version, name) VALUES ($1, $2)`, [m.version, m.name]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {});
          throw new Error(`migration ${m.version} (${m.name}) failed: ${(err as Error).message}`);
        }
        done.push(m.version);
      }
      return done;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_NAMESPACE, key]).catch(() => {});
    }
  } catch (err) {
    throw err instanceof NewerSchemaError ? err : unavailable('store', err);
  } finally {
    await client.end().catch(() => {});
  }
}
