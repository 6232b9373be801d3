import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { CompiledOps } from '../../src/store/sqlite/ops/index.js';
import { createBatchRunner } from '../../src/store/sqlite/writer/run-batch.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A database file with two tables and ops that write them (instead of hookd's ops). */
function setup() {
  const dir = mkdtempSync(path.join(tmpdir(), 'hookd-run-batch-'));
  dirs.push(dir);
  const db = new Database(path.join(dir, 'b.db'));
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE records (id INTEGER PRIMARY KEY, data BLOB); CREATE TABLE acks (id INTEGER PRIMARY KEY)');
  // INSERT … SELECT, as recordStep: on SQLITE_FULL, SQLite undoes the statement but keeps the transaction.
  const insertRecord = db.prepare('INSERT INTO records (id, data) SELECT ?, ?');
  const insertAck = db.prepare('INSERT INTO acks (id) VALUES (?)');
  const ops = {
    record: (a: { id: number; bytes: number }) => insertRecord.run(a.id, Buffer.alloc(a.bytes)).changes,
    ack: (a: { id: number }) => insertAck.run(a.id).changes,
  } as unknown as CompiledOps;
  const count = (table: string) => db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
  return { db, runner: createBatchRunner(db, ops), count };
}

describe('SQLite group commit (run-batch)', () => {
  it('an op failing on its own (a constraint) is rolled back alone; the rest of the batch commits', () => {
    const { runner, count } = setup();
    runner.run([[1, 'record', { id: 1, bytes: 10 }]]);
    const out = runner.run([
      [2, 'record', { id: 1, bytes: 10 }], // duplicate key
      [3, 'ack', { id: 1 }],
      [4, 'record', { id: 2, bytes: 10 }],
    ]);
    expect(out.map(([, ok]) => ok)).toEqual([false, true, true]);
    expect(out[0]![2]).toMatchObject({ code: expect.stringMatching(/^SQLITE_CONSTRAINT/) });
    expect(count('records')).toBe(2);
    expect(count('acks')).toBe(1);
  });

  it('a database error (disk full) fails the whole batch: an ack never commits without the write before it', () => {
    const { db, runner, count } = setup();
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.pragma(`max_page_count = ${pages + 2}`);
    const out = runner.run([
      [1, 'record', { id: 1, bytes: 200_000 }], // SQLITE_FULL: SQLite undoes only this statement
      [2, 'ack', { id: 1 }],
    ]);
    expect(out.map(([, ok]) => ok)).toEqual([false, false]);
    for (const o of out) expect(o[2]).toMatchObject({ code: 'SQLITE_FULL' });
    expect(db.inTransaction).toBe(false);
    expect(count('records')).toBe(0);
    expect(count('acks')).toBe(0);
  });
});
