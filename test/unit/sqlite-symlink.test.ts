import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { openSqliteBackend } from '../../src/store/sqlite/index.js';
import { makeMessage } from '../conformance/helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

it('a database path that is a symlink: commits fsync the WAL beside the real file', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hookd-symlink-'));
  dirs.push(dir);
  mkdirSync(path.join(dir, 'real'));
  mkdirSync(path.join(dir, 'data'));
  // The file exists before the link (as after moving the database to another disk).
  const first = await openSqliteBackend({ path: path.join(dir, 'real', 'hookd.db'), leaseMs: 30_000 });
  await first.close();
  symlinkSync(path.join(dir, 'real', 'hookd.db'), path.join(dir, 'data', 'hookd.db'));

  const backend = await openSqliteBackend({ path: path.join(dir, 'data', 'hookd.db'), leaseMs: 30_000 });
  try {
    const m = makeMessage({ flowId: 'f' });
    expect(await backend.requests.accept(m, { maxAttempts: 3 })).toEqual({ kind: 'stored' });
    expect((await backend.requests.get(m.id))?.id).toBe(m.id);
    expect(existsSync(path.join(dir, 'real', 'hookd.db-wal'))).toBe(true);
    expect(existsSync(path.join(dir, 'data', 'hookd.db-wal'))).toBe(false);
  } finally {
    await backend.close();
  }
});
