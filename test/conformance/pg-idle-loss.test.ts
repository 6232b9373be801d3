/**
 * An idle pool connection the server drops (a PostgreSQL restart, a proxy's idle timeout): one
 * readable log line. pg hangs the whole client (its parsers, type tables, settings) on the error;
 * logged as it was, that made a single line of over 20 KB.
 */
import pg from 'pg';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { PgDatabase } from '../../src/store/postgres/database.js';
import { waitFor } from '../helpers/hookd.js';
import { DATABASE_URL } from './pg-schema.js';

it('logs a lost idle connection in one short line that says what happened', async () => {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(line);
      cb();
    },
  });
  const db = new PgDatabase({ connectionString: DATABASE_URL, logger: pino({ level: 'info' }, stream), applicationName: 'hookd-idle-loss-test' });
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  try {
    const { rows } = await db.pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    const line = (await waitFor(() => lines.find((l) => l.includes('idle connection lost')), 5_000))!;
    expect(line.length).toBeLessThan(2_000);
    expect(JSON.parse(line)).toMatchObject({ level: 40, err: { message: expect.stringMatching(/terminat/i) } });
    expect(line).not.toContain('connectionParameters');
  } finally {
    await admin.end();
    await db.close();
  }
});
