import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeEach } from 'vitest';

/** The server the PostgreSQL tests use (the local test database by default). */
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * A schema of its own for every test of the calling file, against a real server: before each test
 * a fresh name is handed to `onSchema`; after it, `close` runs (the test's connections) and the
 * schema is dropped; after the file, any schema of this file still there is dropped and the admin
 * pool ends. An unreachable server fails the tests (no skip). Returns the admin pool (inspection).
 */
export function pgSchemaPerTest(hooks: { onSchema(schema: string): void; close(): Promise<unknown> }): pg.Pool {
  const tag = `hookd_test_${randomBytes(4).toString('hex')}_`;
  let seq = 0;
  let current = '';
  const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 3 });
  admin.on('error', () => {});

  beforeEach(() => {
    current = `${tag}${++seq}`;
    hooks.onSchema(current);
  });

  afterEach(async () => {
    await hooks.close();
    await admin.query(`DROP SCHEMA IF EXISTS "${current}" CASCADE`);
  });

  afterAll(async () => {
    const { rows } = await admin.query<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE nspname LIKE $1', [`${tag}%`]);
    for (const r of rows) await admin.query(`DROP SCHEMA IF EXISTS "${r.nspname}" CASCADE`);
    await admin.end();
  });
  return admin;
}
