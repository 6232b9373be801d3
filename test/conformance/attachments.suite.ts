import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AttachmentStore, AttachmentWriter } from '../../src/attachments/contract.js';
import { isHookdError } from '../../src/core/errors.js';
import type { AttachmentRef } from '../../src/core/message.js';

/**
 * The attachment store contract (src/attachments/contract.ts), the same tests for every backend: the
 * fs store (embedded) and the PostgreSQL store (distributed). Backends with chunked storage should
 * use small chunks here (e.g. 1000 bytes), so the ~10 KB attachments below span many of them.
 */
export interface AttachmentHarness {
  store: AttachmentStore;
  /** Make an attachment (finished or not) look `ms` older to the sweep. */
  age(id: string, ms: number): Promise<void>;
  /** Whatever the backend still holds (file names, rows): "nothing left behind" is []. */
  leftovers(): Promise<string[]>;
  close(): Promise<void>;
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part as Uint8Array));
  return Buffer.concat(parts);
}

export function sha256(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

const HOUR = 3_600_000;

export function describeAttachmentConformance(name: string, setup: () => Promise<AttachmentHarness>): void {
  describe(`${name}: attachment store conformance`, () => {
    let h: AttachmentHarness;
    let store: AttachmentStore;

    beforeEach(async () => {
      h = await setup();
      store = h.store;
    });
    afterEach(async () => {
      await h.close();
    });

    /** Write `bytes` in pieces of the given sizes (cycled), then finish. */
    async function put(
      bytes: Buffer,
      meta: { contentType?: string; filename?: string; field?: string } = {},
      pieces: number[] = [1000],
    ): Promise<AttachmentRef> {
      const w = await store.create({ contentType: meta.contentType ?? 'application/octet-stream', ...meta });
      await writeIn(w, bytes, pieces);
      return w.finish();
    }

    async function writeIn(w: AttachmentWriter, bytes: Buffer, pieces: number[]): Promise<void> {
      for (let i = 0, n = 0; i < bytes.length; n++) {
        const len = pieces[n % pieces.length]!;
        await w.write(bytes.subarray(i, i + len));
        i += len;
      }
    }

    async function read(id: string, range?: { start: number; end?: number }): Promise<Buffer | undefined> {
      const opened = await store.open(id, range);
      return opened === undefined ? undefined : readAll(opened.stream);
    }

    async function exists(id: string): Promise<boolean> {
      const opened = await store.open(id);
      opened?.stream.destroy();
      return opened !== undefined;
    }

    it('computes size and sha256, and reads back whole and in ranges', async () => {
      const bytes = Buffer.from('x'.repeat(2500) + 'tail');
      const ref = await put(bytes, { contentType: 'application/pdf', filename: 'a.pdf', field: 'doc' });
      expect(ref).toEqual({
        id: ref.id,
        field: 'doc',
        filename: 'a.pdf',
        contentType: 'application/pdf',
        size: bytes.length,
        sha256: sha256(bytes),
      });
      expect(ref.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

      const opened = (await store.open(ref.id))!;
      expect(opened.ref).toEqual(ref);
      expect(await readAll(opened.stream)).toEqual(bytes);
      expect((await read(ref.id, { start: 2500, end: 2503 }))!.toString()).toBe('tail');
      expect((await read(ref.id, { start: 2502 }))!.toString()).toBe('il');
    });

    it('keeps field, filename and content type exactly (unicode, U+0000); absent ones stay absent', async () => {
      const odd = await put(Buffer.from('odd'), { field: 'f\u0000ld', filename: 'r\u00e9sum\u00e9 \u{1F4C4}\u0000.pdf', contentType: 'application/pdf; name="x"' });
      expect((await store.open(odd.id))!.ref).toEqual(odd);
      expect(odd.filename).toBe('r\u00e9sum\u00e9 \u{1F4C4}\u0000.pdf');
      expect(odd.field).toBe('f\u0000ld');

      const bare = await put(Buffer.from('bare'), { contentType: 'text/plain' });
      const opened = (await store.open(bare.id))!;
      opened.stream.destroy();
      for (const ref of [bare, opened.ref]) {
        expect(Object.keys(ref).sort()).toEqual(['contentType', 'id', 'sha256', 'size']);
      }
    });

    it('an empty attachment is fine', async () => {
      const ref = await put(Buffer.alloc(0));
      expect(ref.size).toBe(0);
      expect(ref.sha256).toBe(sha256(''));
      expect((await read(ref.id))!.length).toBe(0);
      expect((await read(ref.id, { start: 0, end: 10 }))!.length).toBe(0);
    });

    it('a multi-chunk attachment reads back whole and in ranges across chunk boundaries', async () => {
      const bytes = randomBytes(10_007);
      // Pieces smaller than, equal to, and spanning several chunks.
      const ref = await put(bytes, { contentType: 'application/octet-stream' }, [1, 999, 1000, 3333, 7, 2500]);
      expect(ref.size).toBe(bytes.length);
      expect(ref.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
      const whole = (await read(ref.id))!;
      expect(whole.equals(bytes)).toBe(true);
      expect(sha256(whole)).toBe(ref.sha256);

      const ranges: Array<[number, number | undefined]> = [
        [0, 0],
        [999, 1000],
        [998, 2001],
        [1000, 1999],
        [1, 8999],
        [4321, 4321],
        [9990, undefined],
        [10_006, undefined],
      ];
      for (const [start, end] of ranges) {
        const got = (await read(ref.id, end === undefined ? { start } : { start, end }))!;
        expect(got.equals(bytes.subarray(start, end === undefined ? undefined : end + 1)), `${start}-${end}`).toBe(true);
      }
      // Clamped like HTTP ranges: end past the size, negative start; empty when nothing is left.
      expect((await read(ref.id, { start: 5000, end: 99_999 }))!.equals(bytes.subarray(5000))).toBe(true);
      expect((await read(ref.id, { start: -5, end: 3 }))!.equals(bytes.subarray(0, 4))).toBe(true);
      expect((await read(ref.id, { start: 10_007 }))!.length).toBe(0);
      expect((await read(ref.id, { start: 10, end: 5 }))!.length).toBe(0);
    });

    it('attachments written at the same time stay apart', async () => {
      const contents = Array.from({ length: 5 }, (_, i) => randomBytes(3000 + i * 777));
      const writers = await Promise.all(contents.map(() => store.create({ contentType: 'application/octet-stream' })));
      expect(new Set(writers.map((w) => w.id)).size).toBe(writers.length);
      // Interleave: each round writes the next piece of every attachment.
      for (let off = 0; off < 7000; off += 450) {
        await Promise.all(writers.map((w, i) => (off < contents[i]!.length ? w.write(contents[i]!.subarray(off, off + 450)) : undefined)));
      }
      const refs = await Promise.all(writers.map((w) => w.finish()));
      for (const [i, ref] of refs.entries()) {
        expect(ref.size).toBe(contents[i]!.length);
        expect(writers[i]!.size).toBe(contents[i]!.length);
        expect((await read(ref.id))!.equals(contents[i]!)).toBe(true);
      }
    });

    it('abort() drops a write in progress, and a finished attachment; it is idempotent', async () => {
      const w = await store.create({ contentType: 'text/plain' });
      await writeIn(w, randomBytes(2500), [1000]);
      expect(await exists(w.id)).toBe(false); // not finished: not there for readers
      await w.abort();
      await w.abort();
      expect(await h.leftovers()).toEqual([]);
      await expect(w.write(Buffer.from('more'))).rejects.toThrow();
      await expect(w.finish()).rejects.toThrow();

      const w2 = await store.create({ contentType: 'text/plain' });
      await w2.write(Buffer.from('done'));
      const ref = await w2.finish();
      expect(await exists(ref.id)).toBe(true);
      await w2.abort();
      await w2.abort();
      expect(await exists(ref.id)).toBe(false);
      expect(await h.leftovers()).toEqual([]);
    });

    it('a finished writer takes no more bytes and finishes once', async () => {
      const w = await store.create({ contentType: 'text/plain' });
      await w.write(Buffer.from('once'));
      const ref = await w.finish();
      await expect(w.write(Buffer.from('again'))).rejects.toThrow();
      await expect(w.finish()).rejects.toThrow();
      expect((await read(ref.id))!.toString()).toBe('once');
    });

    it('maxBytes: a write past the limit rejects with 413 and leaves nothing behind', async () => {
      const w = await store.create({ contentType: 'application/octet-stream', maxBytes: 10 });
      await w.write(Buffer.alloc(8));
      const err = await w.write(Buffer.alloc(8)).catch((e: unknown) => e);
      expect(isHookdError(err) && err.statusCode).toBe(413);
      expect(isHookdError(err) && err.code).toBe('PAYLOAD_TOO_LARGE');
      expect(await h.leftovers()).toEqual([]);
      await expect(w.write(Buffer.alloc(1))).rejects.toThrow();

      // Past the limit after several chunks were stored.
      const big = await store.create({ contentType: 'application/octet-stream', maxBytes: 2500 });
      await big.write(randomBytes(1000));
      await big.write(randomBytes(1000));
      const err2 = await big.write(randomBytes(1000)).catch((e: unknown) => e);
      expect(isHookdError(err2) && err2.statusCode).toBe(413);
      expect(await h.leftovers()).toEqual([]);

      // Exactly the limit is fine.
      const exact = await store.create({ contentType: 'application/octet-stream', maxBytes: 2500 });
      await writeIn(exact, randomBytes(2500), [1000]);
      expect((await exact.finish()).size).toBe(2500);
    });

    it('open() of unknown or non-UUIDv7 ids is undefined; delete() ignores them', async () => {
      expect(await store.open('0190b5b4-9c6b-7a3e-8e4f-3a1b2c3d4e5f')).toBeUndefined();
      expect(await store.open('0190B5B4-9C6B-7A3E-8E4F-3A1B2C3D4E5F')).toBeUndefined();
      expect(await store.open('0190b5b4-9c6b-4a3e-8e4f-3a1b2c3d4e5f')).toBeUndefined(); // v4
      expect(await store.open('../../etc/passwd')).toBeUndefined();
      expect(await store.open('not-an-id')).toBeUndefined();
      expect(await store.open('')).toBeUndefined();
      expect(await store.open('0190b5b4-9c6b-7a3e-8e4f-3a1b2c3d4e5f\u0000')).toBeUndefined();
      expect(await store.delete(['../x', 'nope', '', 'a\u0000b', '0190b5b4-9c6b-7a3e-8e4f-3a1b2c3d4e5f'])).toBe(0);
      expect(await store.delete([])).toBe(0);
    });

    it('open() of a write in progress is undefined', async () => {
      const w = await store.create({ contentType: 'text/plain' });
      await writeIn(w, randomBytes(2500), [1000]);
      expect(await store.open(w.id)).toBeUndefined();
      await w.abort();
    });

    it('delete() removes attachments and counts them', async () => {
      const a = await put(Buffer.from('a'));
      const b = await put(Buffer.from('b'));
      const c = await put(Buffer.from('c'));
      expect(await store.delete([a.id, b.id, a.id])).toBe(2);
      expect(await exists(a.id)).toBe(false);
      expect(await exists(b.id)).toBe(false);
      expect(await exists(c.id)).toBe(true);
      expect(await store.delete([a.id])).toBe(0);
    });

    it('delete() removes a write in progress too: its finish() then rejects with 503', async () => {
      const w = await store.create({ contentType: 'text/plain' });
      await writeIn(w, randomBytes(2500), [1000]);
      expect(await store.delete([w.id])).toBe(1);
      const err = await w.finish().catch((e: unknown) => e);
      expect(isHookdError(err) && err.statusCode).toBe(503);
      expect(await h.leftovers()).toEqual([]);
      await w.abort();
    });

    it('sweep() on an empty store finds nothing', async () => {
      expect(await store.sweep(async () => false, 0)).toEqual({ scanned: 0, removed: 0, freedBytes: 0 });
    });

    it('sweep() removes old unreferenced attachments and stale unfinished writes, keeps the rest', async () => {
      const referenced = await put(Buffer.from('kept: a request references it'));
      const orphan = await put(Buffer.from('orphan: crash between write and commit'));
      const fresh = await put(Buffer.from('fresh: its request may be committing now'));
      const stale = await store.create({ contentType: 'text/plain' });
      await stale.write(Buffer.from('crashed mid-upload'));
      const live = await store.create({ contentType: 'text/plain' });
      await live.write(Buffer.from('still uploading'));
      for (const id of [referenced.id, orphan.id, stale.id]) await h.age(id, 2 * HOUR);

      const asked: string[] = [];
      const result = await store.sweep(async (id) => {
        asked.push(id);
        return id === referenced.id;
      }, HOUR);
      expect(result.removed).toBe(2);
      expect(result.scanned).toBeGreaterThanOrEqual(3);
      // The orphan's bytes, and whatever of the stale write had reached storage.
      expect(result.freedBytes).toBeGreaterThanOrEqual(orphan.size);
      expect(result.freedBytes).toBeLessThanOrEqual(orphan.size + 'crashed mid-upload'.length);
      // Only finished attachments are worth asking about.
      expect(asked.sort()).toEqual([referenced.id, orphan.id].sort());
      expect(await exists(referenced.id)).toBe(true);
      expect(await exists(orphan.id)).toBe(false);
      expect(await exists(fresh.id)).toBe(true);
      // The stale write is gone: finishing it now fails.
      await expect(stale.finish()).rejects.toThrow();
      // The live writer is unaffected.
      await live.write(Buffer.from('!'));
      const done = await live.finish();
      expect(done.size).toBe(16);
      expect((await read(done.id))!.toString()).toBe('still uploading!');
      await stale.abort();

      // A second sweep finds the survivors referenced or fresh.
      const again = await store.sweep(async (id) => id === referenced.id, HOUR);
      expect(again).toMatchObject({ removed: 0, freedBytes: 0 });
    });

    it('sweep() with a zero horizon takes every unreferenced attachment', async () => {
      const a = await put(Buffer.from('a'));
      const b = await put(Buffer.from('bb'));
      for (const id of [a.id, b.id]) await h.age(id, 1000);
      const result = await store.sweep(async (id) => id === a.id, 0);
      expect(result).toMatchObject({ removed: 1, freedBytes: 2 });
      expect(await exists(a.id)).toBe(true);
      expect(await exists(b.id)).toBe(false);
    });
  });
}
