import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, expect, it } from 'vitest';
import { openSqliteBackend } from '../../src/store/sqlite/index.js';
import { makeMessage } from '../conformance/helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

it('SQLITE_VACUUM_ON_START gives the space of deleted requests back to the disk, and keeps what is left intact', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hookd-vacuum-'));
  dirs.push(dir);
  const file = path.join(dir, 'hookd.db');
  const first = await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true });
  const kept = [];
  try {
    const msgs = Array.from({ length: 2_000 }, (_, i) => makeMessage({ flowId: i % 200 === 0 ? 'kept' : 'flood', rawBody: Buffer.alloc(4096, i % 251) }));
    await Promise.all(msgs.map((m) => first.requests.accept(m, { maxAttempts: 1 })));
    kept.push(...msgs.filter((m) => m.flowId === 'kept'));
  } finally {
    await first.close();
  }
  // What a retention purge does to a flood's requests (with their jobs), done directly.
  const db = new BetterSqlite3(file);
  db.exec(`DELETE FROM jobs WHERE flow_id = 'flood'; DELETE FROM requests WHERE flow_id = 'flood'; PRAGMA wal_checkpoint(TRUNCATE);`);
  db.close();
  const bloated = statSync(file).size;
  expect(bloated).toBeGreaterThan(8 * 1024 * 1024);

  // Without the option the file keeps its size; with it, it shrinks to what is left.
  const plain = await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true });
  await plain.close();
  expect(statSync(file).size).toBe(bloated);
  const logged: Array<{ obj: object; msg: string }> = [];
  const logger = { info: (obj: object, msg: string) => logged.push({ obj, msg }), warn: (obj: object, msg: string) => logged.push({ obj, msg }), error: () => {} };
  const compacted = await openSqliteBackend({ path: file, leaseMs: 30_000, exclusive: true, vacuumOnStart: true, logger });
  try {
    expect(statSync(file).size).toBeLessThan(bloated / 10);
    expect(logged.find((l) => /compacted/.test(l.msg))?.obj).toMatchObject({ beforeBytes: expect.any(Number), afterBytes: statSync(file).size });
    for (const m of kept) expect(await compacted.requests.get(m.id)).toEqual(m);
    expect((await compacted.queue.stats()).ready).toBe(kept.length);
    const more = makeMessage({ flowId: 'kept' });
    expect(await compacted.requests.accept(more, { maxAttempts: 1 })).toEqual({ kind: 'stored' });
  } finally {
    await compacted.close();
  }
});
