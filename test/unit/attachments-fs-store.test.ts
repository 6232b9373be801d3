import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createFsAttachmentStore, type FsAttachmentStore } from '../../src/attachments/fs-store.js';
import { isHookdError } from '../../src/core/errors.js';
import { filesUnder, readAll, sha256 } from './parsers-harness.js';

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

async function put(bytes: Buffer, meta: { contentType?: string; filename?: string; field?: string } = {}) {
  const w = await store.create({ contentType: meta.contentType ?? 'application/octet-stream', ...meta });
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
  it('lives under DATA_DIR/attachments, computes size and sha256, and reads back (whole and ranges)', async () => {
    const bytes = Buffer.from('x'.repeat(2500) + 'tail');
    const ref = await put(bytes, { contentType: 'application/pdf', filename: 'a.pdf', field: 'doc' });
    expect(ref).toMatchObject({ contentType: 'application/pdf', filename: 'a.pdf', field: 'doc', size: bytes.length, sha256: sha256(bytes) });
    expect(ref.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(store.dir).toBe(path.join(dataDir, 'attachments'));
    const files = filesUnder(store.dir).map((f) => path.relative(store.dir, f));
    expect(files.sort()).toEqual([expect.stringMatching(new RegExp(`^\\d{4}-\\d{2}-\\d{2}/${ref.id}$`)), expect.stringMatching(/\.json$/)].sort());

    const opened = (await store.open(ref.id))!;
    expect(opened.ref).toEqual(ref);
    expect(await readAll(opened.stream)).toEqual(bytes);
    const range = (await store.open(ref.id, { start: 2500, end: 2503 }))!;
    expect((await readAll(range.stream)).toString()).toBe('tail');
    const open2 = (await store.open(ref.id, { start: 2502 }))!;
    expect((await readAll(open2.stream)).toString()).toBe('il');
  });

  it('an empty attachment is fine', async () => {
    const ref = await put(Buffer.alloc(0));
    expect(ref.size).toBe(0);
    expect(ref.sha256).toBe(sha256(''));
    expect((await readAll((await store.open(ref.id))!.stream)).length).toBe(0);
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

  it('abort() removes the partial file; abort after finish removes the attachment', async () => {
    const w = await store.create({ contentType: 'text/plain' });
    await w.write(Buffer.from('partial'));
    expect(filesUnder(store.dir).some((f) => f.endsWith('.part'))).toBe(true);
    await w.abort();
    await w.abort(); // idempotent
    expect(filesUnder(store.dir)).toEqual([]);
    await expect(w.write(Buffer.from('more'))).rejects.toThrow();

    const w2 = await store.create({ contentType: 'text/plain' });
    await w2.write(Buffer.from('done'));
    const ref = await w2.finish();
    await w2.abort();
    expect(await exists(ref.id)).toBe(false);
    expect(filesUnder(store.dir)).toEqual([]);
  });

  it('an opened attachment stays readable when it is deleted meanwhile', async () => {
    const ref = await put(Buffer.from('pinned'));
    const opened = (await store.open(ref.id))!;
    await store.delete([ref.id]);
    expect((await readAll(opened.stream)).toString()).toBe('pinned');
  });

  it('maxBytes: a write past the limit rejects with 413 and leaves nothing behind', async () => {
    const w = await store.create({ contentType: 'application/octet-stream', maxBytes: 10 });
    await w.write(Buffer.alloc(8));
    const err = await w.write(Buffer.alloc(8)).catch((e: unknown) => e);
    expect(isHookdError(err) && err.statusCode).toBe(413);
    expect(filesUnder(store.dir)).toEqual([]);
  });

  it('open() of unknown or non-UUIDv7 ids (paths included) is undefined', async () => {
    expect(await store.open('0190b5b4-9c6b-7a3e-8e4f-3a1b2c3d4e5f')).toBeUndefined();
    expect(await store.open('../../etc/passwd')).toBeUndefined();
    expect(await store.open('not-an-id')).toBeUndefined();
    expect(await store.delete(['../x', 'nope'])).toBe(0);
  });

  it('delete() removes attachments and counts them', async () => {
    const a = await put(Buffer.from('a'));
    const b = await put(Buffer.from('b'));
    const c = await put(Buffer.from('c'));
    expect(await store.delete([a.id, b.id, a.id])).toBe(2);
    expect(await exists(a.id)).toBe(false);
    expect(await exists(c.id)).toBe(true);
  });

  it('sweep() removes old unreferenced attachments and stale partial writes, keeps the rest', async () => {
    const referenced = await put(Buffer.from('kept: a request references it'));
    const orphan = await put(Buffer.from('orphan: crash between write and commit'));
    const fresh = await put(Buffer.from('fresh: its request may be committing now'));
    const stale = await store.create({ contentType: 'text/plain' });
    await stale.write(Buffer.from('crashed mid-upload'));
    const live = await store.create({ contentType: 'text/plain' });
    await live.write(Buffer.from('still uploading'));
    const hour = 3_600_000;
    // write() resolves once the stream took the bytes; wait until they reached the .part files, or
    // a late write would set their mtime back to now after age() below.
    for (const id of [stale.id, live.id]) {
      const part = () => filesUnder(store.dir).find((f) => path.basename(f) === `${id}.part`)!;
      while (statSync(part()).size === 0) await new Promise((r) => setTimeout(r, 2));
    }
    age(referenced.id, 2 * hour);
    age(orphan.id, 2 * hour);
    age(stale.id, 2 * hour);
    // A metadata file whose bytes never got renamed in place (crash inside finish()).
    const folder = path.dirname(filesUnder(store.dir)[0]!);
    const halfId = '0190b5b4-9c6b-7a3e-8e4f-3a1b2c3d4e5f';
    writeFileSync(path.join(folder, `${halfId}.json`), '{}');
    age(halfId, 2 * hour);
    // Foreign files are left alone.
    writeFileSync(path.join(folder, 'README'), 'not ours');

    const asked: string[] = [];
    const result = await store.sweep(async (id) => {
      asked.push(id);
      return id === referenced.id;
    }, hour);
    expect(result.removed).toBe(3);
    expect(result.freedBytes).toBeGreaterThan(0);
    expect(asked.sort()).toEqual([referenced.id, orphan.id].sort());
    expect(await exists(referenced.id)).toBe(true);
    expect(await exists(orphan.id)).toBe(false);
    expect(await exists(fresh.id)).toBe(true);
    const left = filesUnder(store.dir).map((f) => path.basename(f));
    expect(left.some((n) => n.startsWith(stale.id))).toBe(false);
    expect(left.some((n) => n.startsWith(halfId))).toBe(false);
    expect(left).toContain(`${live.id}.part`);
    expect(left).toContain('README');
    // The live writer is unaffected.
    await live.write(Buffer.from('!'));
    expect((await live.finish()).size).toBe(16);
    await stale.abort(); // (its process "crashed": only the file handle is left to close)
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
