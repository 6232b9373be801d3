import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { startCheckpointer } from '../../src/store/sqlite/checkpointer.js';

describe('SQLite checkpointer', () => {
  it('is started again when its thread dies, and goes on restarting the WAL', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hookd-checkpointer-'));
    const file = path.join(dir, 'db.sqlite');
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('wal_autocheckpoint = 0'); // as the writer: checkpoints are the thread's job
    db.exec('CREATE TABLE t (x BLOB)');
    const insert = db.prepare('INSERT INTO t VALUES (?)');
    let restarts = 0;
    const errors: string[] = [];
    const cp = startCheckpointer(file, { intervalMs: 20, restartBytes: 64 * 1024, onRestart: () => restarts++, onError: (m) => errors.push(m) });
    try {
      const fill = () => {
        for (let i = 0; i < 64; i++) insert.run(Buffer.alloc(4096));
      };
      const until = async (cond: () => boolean, ms: number) => {
        const end = Date.now() + ms;
        while (!cond() && Date.now() < end) {
          fill();
          await new Promise((r) => setTimeout(r, 20));
        }
        return cond();
      };
      expect(await until(() => restarts > 0, 5_000)).toBe(true);
      await cp.kill();
      expect(await until(() => cp.starts === 2, 5_000)).toBe(true);
      expect(errors.some((e) => /starting it again/.test(e))).toBe(true);
      const before = restarts;
      expect(await until(() => restarts > before, 5_000), 'the new thread restarts the WAL too').toBe(true);
    } finally {
      await cp.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
