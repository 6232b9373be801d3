import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { openSqliteBackend } from '../../src/store/sqlite/index.js';
import { makeMessage } from '../conformance/helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

for (const [what, remove] of [
  ['deleted', (file: string) => ['', '-wal', '-shm'].forEach((s) => unlinkSync(`${file}${s}`))],
  ['replaced (renamed over)', (file: string) => {
    writeFileSync(`${file}.new`, '');
    renameSync(`${file}.new`, file);
  }],
] as const) {
  it(`a database file ${what} while hookd runs: writes answer 503 from the next commit on, never 2xx again`, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hookd-gone-'));
    dirs.push(dir);
    const file = path.join(dir, 'hookd.db');
    const errors: string[] = [];
    const logger = { info: () => {}, warn: () => {}, error: (_o: object, msg: string) => void errors.push(msg) };
    const backend = await openSqliteBackend({ path: file, leaseMs: 30_000, logger });
    try {
      expect(await backend.requests.accept(makeMessage({ flowId: 'f' }), { maxAttempts: 3 })).toEqual({ kind: 'stored' });
      remove(file);
      // Nothing written now would be there after a restart: refused, with the reason.
      await expect(backend.requests.accept(makeMessage({ flowId: 'f' }), { maxAttempts: 3 })).rejects.toMatchObject({ statusCode: 503, message: expect.stringMatching(/SQLITE_FILE_GONE/) });
      await expect(backend.checkWritable()).rejects.toMatchObject({ statusCode: 503 });
      await expect(backend.requests.accept(makeMessage({ flowId: 'f' }), { maxAttempts: 3 })).rejects.toMatchObject({ statusCode: 503 });
      expect(errors.filter((m) => /deleted or replaced/.test(m))).toHaveLength(1);
    } finally {
      await backend.close();
    }
  });
}

it('the one-process lock file deleted while hookd runs (a second process could now open the database): writes answer 503', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hookd-gone-'));
  dirs.push(dir);
  const file = path.join(dir, 'hookd.db');
  const logger = { info: () => {}, warn: () => {}, error: () => {} };
  const backend = await openSqliteBackend({ path: file, leaseMs: 30_000, logger, exclusive: true });
  try {
    expect(await backend.requests.accept(makeMessage({ flowId: 'f' }), { maxAttempts: 3 })).toEqual({ kind: 'stored' });
    unlinkSync(`${file}.lock`);
    // The commit that notices is in the database, durable: answered as stored; the next is refused.
    const noticed = makeMessage({ flowId: 'f' });
    expect(await backend.requests.accept(noticed, { maxAttempts: 3 })).toEqual({ kind: 'stored' });
    await expect(backend.requests.accept(makeMessage({ flowId: 'f' }), { maxAttempts: 3 })).rejects.toMatchObject({ statusCode: 503, message: expect.stringMatching(/hookd\.db\.lock was deleted or replaced/) });
    expect((await backend.requests.get(noticed.id))?.id).toBe(noticed.id);
  } finally {
    await backend.close();
  }
});
