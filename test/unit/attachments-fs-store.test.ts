import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createFsAttachmentStore, type FsAttachmentStore } from '../../src/attachments/fs-store.js';
import { isHookdError } from '../../src/core/errors.js';
import { filesUnder, readAll, sha256 } from './parsers-harness.js';

/**
 * What only the fs store does: its folder layout, fsync, pinning an opened file, path safety, and
 * files it does not own. The contract itself is test/conformance/attachments.suite.ts, run for this
 * store by test/conformance/attachments-fs.test.ts.
 */
let dataDir: string;
let store: FsAttachmentStore;

beforeEach(() => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'hookd-att-'));
  store = createFsAttachmentStore(dataDir);
});
afterEach(() => {
  vi.restoreAllMocks();
  rmSync(dataDir, { recursive: true, force: true });
});

async function put(bytes: Buffer) {
  const w = await store.create({ contentType: 'application/octet-stream' });
  for (let i = 0; i < bytes.length; i += 1000) await w.write(bytes.subarray(i, i + 1000));
  return w.finish();
}

async function exists(id: string): Promise<boolean> {
  const opened = await store.open(id);
  opened?.stream.destroy();
  return opened !== undefined;
}

function age(id: string, ms: number): void {
  const t = (Date.now() - ms) / 1000;
  for (const f of filesUnder(store.dir).filter((f) => path.basename(f).startsWith(id))) utimesSync(f, t, t);
}

describe('fs attachment store', () => {
  it('lives under DATA_DIR/attachments: one folder per UTC day, <id> and <id>.json', async () => {
    const bytes = Buffer.from('x'.repeat(2500) + 'tail');
    const ref = await put(bytes);
    expect(ref.sha256).toBe(sha256(bytes));
    expect(store.dir).toBe(path.join(dataDir, 'attachments'));
    // The day of the id's UUIDv7 time (its first 48 bits).
    const day = new Date(parseInt(ref.id.slice(0, 8) + ref.id.slice(9, 13), 16)).toISOString().slice(0, 10);
    const files = filesUnder(store.dir).map((f) => path.relative(store.dir, f));
    expect(files.sort()).toEqual([`${day}/${ref.id}`, `${day}/${ref.id}.json`]);
  });

  it('fsyncs the bytes, the metadata and the folder before finish() resolves', async () => {
    const probe = await open(path.join(dataDir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { sync(): Promise<void> };
    await probe.close();
    const sync = vi.spyOn(proto, 'sync');
    const w = await store.create({ contentType: 'text/plain' });
    await w.write(Buffer.from('durable'));
    const before = sync.mock.calls.length;
    const ref = await w.finish();
    expect(sync.mock.calls.length - before).toBeGreaterThanOrEqual(3);
    // No partial file once finished.
    expect(filesUnder(store.dir).some((f) => f.endsWith('.part'))).toBe(false);
    expect(existsSync(path.join(store.dir, readdirSync(store.dir)[0]!, ref.id))).toBe(true);
  });

  it('an opened attachment stays readable when it is deleted meanwhile', async () => {
    const ref = await put(Buffer.from('pinned'));
    const opened = (await store.open(ref.id))!;
    await store.delete([ref.id]);
    expect(await exists(ref.id)).toBe(false);
    expect((await readAll(opened.stream)).toString()).toBe('pinned');
  });

  it('ids never become paths: nothing outside the store is read or removed', async () => {
    writeFileSync(path.join(dataDir, 'x'), 'outside');
    writeFileSync(path.join(dataDir, 'x.json'), '{"id":"x","contentType":"text/plain","size":7,"sha256":""}');
    expect(await store.open('../x')).toBeUndefined();
    expect(await store.open('../../etc/passwd')).toBeUndefined();
    expect(await store.delete(['../x', '../../x', `${dataDir}/x`])).toBe(0);
    expect(existsSync(path.join(dataDir, 'x'))).toBe(true);
    expect(existsSync(path.join(dataDir, 'x.json'))).toBe(true);
  });

  it('sweep() removes half-finished files (metadata without bytes) and leaves foreign files alone', async () => {
    const kept = await put(Buffer.from('kept'));
    const folder = path.dirname(filesUnder(store.dir)[0]!);
    // A metadata file whose bytes never got renamed in place (crash inside finish()).
    const halfId = '0190b5b4-9c6b-7a3e-8e4f-3a1b2c3d4e5f';
    writeFileSync(path.join(folder, `${halfId}.json`), '{}');
    age(halfId, 7_200_000);
    age(kept.id, 7_200_000);
    writeFileSync(path.join(folder, 'README'), 'not ours');
    const asked: string[] = [];
    const result = await store.sweep(async (id) => {
      asked.push(id);
      return true;
    }, 3_600_000);
    expect(result.removed).toBe(1);
    expect(asked).toEqual([kept.id]);
    const left = filesUnder(store.dir).map((f) => path.basename(f));
    expect(left.some((n) => n.startsWith(halfId))).toBe(false);
    expect(left).toContain('README');
    expect(await exists(kept.id)).toBe(true);
  });

  it('sweep() drops emptied folders of past days and copes with a missing directory', async () => {
    expect(await createFsAttachmentStore(path.join(dataDir, 'none')).sweep(async () => false, 0)).toEqual({ scanned: 0, removed: 0, freedBytes: 0 });
    mkdirSync(path.join(store.dir, '2001-01-01'), { recursive: true });
    await store.sweep(async () => false, 0);
    expect(existsSync(path.join(store.dir, '2001-01-01'))).toBe(false);
  });

  it('a store that cannot write answers 503', async () => {
    const blocked = path.join(dataDir, 'file-not-dir');
    writeFileSync(blocked, 'x');
    const bad = createFsAttachmentStore(blocked);
    const err = await bad.create({ contentType: 'text/plain' }).catch((e: unknown) => e);
    expect(isHookdError(err) && err.statusCode).toBe(503);
  });
});
