import { v7 as uuidv7 } from 'uuid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HookdError } from '../../src/core/errors.js';
import type { StepRecord } from '../../src/core/execution.js';
import { normalizeFlow } from '../../src/core/flow.js';
import type { AttachmentRef, CloudEvent, ReceivedMessage } from '../../src/core/message.js';
import type { Backend } from '../../src/store/backend.js';
import type { ReceivedRange } from '../../src/store/contracts.js';
import { makeMessage, waitFor } from './helpers.js';

/**
 * Storage conformance: every backend (sqlite, postgres, …) runs this unchanged.
 *
 * `open()` must return a backend on storage that is empty at the start of each test and the SAME
 * storage when called again within a test (durability checks close and reopen). close() must be
 * idempotent: the suite closes every backend it opened after each test.
 */
export function describeStoreConformance(name: string, open: () => Promise<Backend>): void {
  describe(`${name}: store conformance`, () => {
    const opened: Backend[] = [];
    let backend: Backend;

    const reopen = async (): Promise<Backend> => {
      const b = await open();
      opened.push(b);
      return b;
    };

    beforeEach(async () => {
      backend = await reopen();
    });

    afterEach(async () => {
      await Promise.allSettled(opened.splice(0).map((b) => b.close()));
    });

    /**
     * A request as the store holds it: an execution's read of a message just accepted may come from
     * the process's message cache (src/store/message-cache.ts), get() is the store's own; both agree.
     */
    const stored = async (id: string): Promise<ReceivedMessage | undefined> => {
      const first = await backend.requests.getForExecution(id);
      const second = await backend.requests.get(id);
      expect(second).toEqual(first);
      return second;
    };

    const expect503 = async (p: Promise<unknown>): Promise<void> => {
      const err = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(HookdError);
      expect((err as HookdError).statusCode).toBe(503);
      expect((err as HookdError).retryAfter).toBeGreaterThan(0);
    };

    describe('flows', () => {
      it('puts, gets, lists, replaces and deletes flows', async () => {
        const t0 = new Date('2024-01-02T03:04:05.678Z');
        const a = normalizeFlow(
          {
            name: 'Orders',
            steps: [
              { type: 'transform', expression: '$.order' },
              { type: 'http', url: 'http://127.0.0.1:9/x', method: 'POST', headers: { 'x-k': 'v' } },
            ],
            retry: { maxAttempts: 7, backoffMs: 100 },
          },
          'orders',
          t0,
        );
        const b = normalizeFlow({ status: 'stopped' }, 'billing', t0);
        expect(await backend.flows.get('orders')).toBeUndefined();
        expect(await backend.flows.list()).toEqual([]);

        await backend.flows.put(a);
        await backend.flows.put(b);
        expect(await backend.flows.get('orders')).toEqual(a);
        expect(await backend.flows.get('billing')).toEqual(b);
        const listed = await backend.flows.list();
        expect([...listed].sort((x, y) => x.id.localeCompare(y.id))).toEqual([b, a]);

        const a2 = normalizeFlow({ name: 'Orders v2', steps: [] }, 'orders', new Date(t0.getTime() + 1000), a);
        await backend.flows.put(a2);
        const got = await backend.flows.get('orders');
        expect(got).toEqual(a2);
        expect(got?.createdAt).toBe(a.createdAt);
        expect(got?.steps).toEqual([]);
        expect(await backend.flows.list()).toHaveLength(2);

        expect(await backend.flows.delete('orders')).toBe(true);
        expect(await backend.flows.delete('orders')).toBe(false);
        expect(await backend.flows.get('orders')).toBeUndefined();
        expect((await backend.flows.list()).map((f) => f.id)).toEqual(['billing']);
      });

      it('put with an expectation writes only over what the caller read (absent, or that updatedAt)', async () => {
        const t0 = new Date('2024-01-02T03:04:05.678Z');
        const first = normalizeFlow({ name: 'one' }, 'cas', t0);
        expect(await backend.flows.put(first, { absent: true })).toBe(true);
        expect(await backend.flows.put(normalizeFlow({ name: 'two' }, 'cas', t0), { absent: true })).toBe(false);
        expect((await backend.flows.get('cas'))?.name).toBe('one');

        // Two writers read `first`; the second one's write finds it changed and writes nothing.
        const a = normalizeFlow({ name: 'by a' }, 'cas', t0, first);
        const b = normalizeFlow({ name: 'by b' }, 'cas', t0, first);
        expect(a.updatedAt > first.updatedAt).toBe(true); // same instant: still later than what it replaces
        expect(await backend.flows.put(a, { updatedAt: first.updatedAt })).toBe(true);
        expect(await backend.flows.put(b, { updatedAt: first.updatedAt })).toBe(false);
        expect(await backend.flows.get('cas')).toEqual(a);
        expect(await backend.flows.put(normalizeFlow({ name: 'gone' }, 'nothing-here', t0), { updatedAt: first.updatedAt })).toBe(false);
        expect(await backend.flows.get('nothing-here')).toBeUndefined();

        // A refused put leaves a deletion record alone; a written one clears it.
        expect(await backend.flows.delete('cas')).toBe(true);
        expect(await backend.flows.put(b, { updatedAt: a.updatedAt })).toBe(false);
        expect((await backend.flows.deletions()).map((d) => d.id)).toContain('cas');
        expect(await backend.flows.put(b, { absent: true })).toBe(true);
        expect((await backend.flows.deletions()).map((d) => d.id)).not.toContain('cas');
        expect(await backend.flows.put(first)).toBe(true); // unconditional: replaces whatever is there
        expect(await backend.flows.get('cas')).toEqual(first);
      });

      it('keeps a deletion record per deleted flow until forgotten; putting the flow again clears it', async () => {
        const t0 = new Date('2024-01-02T03:04:05.678Z');
        expect(await backend.flows.deletions()).toEqual([]);
        expect(await backend.flows.delete('never-existed')).toBe(false);
        expect(await backend.flows.deletions()).toEqual([]);

        await backend.flows.put(normalizeFlow({}, 'a.1', t0));
        await backend.flows.put(normalizeFlow({}, 'b', t0));
        await backend.flows.put(normalizeFlow({}, 'c', t0));
        const before = Date.now();
        expect(await backend.flows.delete('a.1')).toBe(true);
        await new Promise((r) => setTimeout(r, 5));
        expect(await backend.flows.delete('b')).toBe(true);
        expect(await backend.flows.delete('c')).toBe(true);
        const after = Date.now();
        const records = await backend.flows.deletions();
        // Oldest first; times on the store's clock (the database's, for a server), close to ours.
        expect(records.map((d) => d.id)).toEqual(['a.1', 'b', 'c']);
        for (const d of records) {
          expect(Number.isInteger(d.deletedAt)).toBe(true);
          expect(d.deletedAt).toBeGreaterThanOrEqual(before - 2_000);
          expect(d.deletedAt).toBeLessThanOrEqual(after + 2_000);
        }
        expect(records[0]!.deletedAt).toBeLessThan(records[1]!.deletedAt);
        // Ages on the store's clock: the oldest first, none negative, about what passed here.
        expect(records[0]!.ageMs).toBeGreaterThanOrEqual(records[1]!.ageMs);
        for (const d of records) {
          expect(d.ageMs).toBeGreaterThanOrEqual(0);
          expect(d.ageMs).toBeLessThanOrEqual(Date.now() - before + 2_000);
        }
        await new Promise((r) => setTimeout(r, 50));
        expect((await backend.flows.deletions())[0]!.ageMs).toBeGreaterThanOrEqual(records[0]!.ageMs + 40);

        // Created again: no longer deleted. Deleted again: a new record (a later time).
        await backend.flows.put(normalizeFlow({}, 'b', t0));
        expect((await backend.flows.deletions()).map((d) => d.id)).toEqual(['a.1', 'c']);
        const c = records[2]!;
        await new Promise((r) => setTimeout(r, 5));
        await backend.flows.put(normalizeFlow({}, 'c', t0));
        expect(await backend.flows.delete('c')).toBe(true);
        const cAgain = (await backend.flows.deletions()).find((d) => d.id === 'c');
        expect(cAgain!.deletedAt).toBeGreaterThan(c.deletedAt);
        // Forgetting names the record's time: the older one is not forgotten by mistake.
        expect(await backend.flows.forgetDeletion('c', c.deletedAt)).toBe(false);
        expect(await backend.flows.forgetDeletion('c', cAgain!.deletedAt)).toBe(true);
        expect(await backend.flows.forgetDeletion('c', cAgain!.deletedAt)).toBe(false);
        expect(await backend.flows.forgetDeletion('a.1', records[0]!.deletedAt)).toBe(true);
        expect(await backend.flows.deletions()).toEqual([]);

        // Durable: a record survives a reopen.
        expect(await backend.flows.delete('b')).toBe(true);
        await backend.close();
        const again = await reopen();
        expect((await again.flows.deletions()).map((d) => d.id)).toEqual(['b']);
      });
    });

    describe('flow deletion records while cleaned up', () => {
      it('holds the record while cleanUp runs: a put() of the same id waits for it; after a put, or when cleanUp says no, the record stays', async () => {
        const t0 = new Date('2024-01-02T03:04:05.678Z');
        const flow = normalizeFlow({}, 'f', t0);
        await backend.flows.put(flow);
        await backend.flows.delete('f');
        const [r] = await backend.flows.deletions();
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        let started!: () => void;
        const cleaning = new Promise<void>((resolve) => (started = resolve));
        const forgetting = backend.flows.forgetDeletion('f', r!.deletedAt, async () => {
          started();
          await gate;
          return true;
        });
        await cleaning;
        // Another instance's pass meanwhile: not this record's cleaner (PostgreSQL skips it at once,
        // SQLite's single process takes it after the first, when it is gone).
        let secondCalled = false;
        const second = backend.flows.forgetDeletion('f', r!.deletedAt, async () => {
          secondCalled = true;
          return true;
        });
        let putDone = false;
        const putting = backend.flows.put(flow).then(() => {
          putDone = true;
        });
        await new Promise((res) => setTimeout(res, 200));
        expect(putDone).toBe(false); // waits for the clean-up (the queue being removed)
        expect(await backend.flows.get('f')).toBeUndefined();
        release();
        expect(await forgetting).toBe(true);
        expect(await second).toBe(false);
        expect(secondCalled).toBe(false);
        await putting;
        expect(await backend.flows.get('f')).toEqual(flow);
        expect(await backend.flows.deletions()).toEqual([]);

        // Created again before the clean-up: the record is gone, cleanUp is not called.
        await backend.flows.delete('f');
        const [r2] = await backend.flows.deletions();
        await backend.flows.put(flow);
        let called = false;
        expect(
          await backend.flows.forgetDeletion('f', r2!.deletedAt, async () => {
            called = true;
            return true;
          }),
        ).toBe(false);
        expect(called).toBe(false);

        // cleanUp says not yet (jobs still in the queue), or fails: the record stays.
        await backend.flows.delete('f');
        const [r3] = await backend.flows.deletions();
        expect(await backend.flows.forgetDeletion('f', r3!.deletedAt, async () => false)).toBe(false);
        await expect(backend.flows.forgetDeletion('f', r3!.deletedAt, () => Promise.reject(new Error('broker away')))).rejects.toThrow('broker away');
        expect((await backend.flows.deletions()).map(({ id, deletedAt }) => ({ id, deletedAt }))).toEqual([{ id: r3!.id, deletedAt: r3!.deletedAt }]);
        // …and a put() after a failed clean-up is not held up.
        await backend.flows.put(flow);
        expect(await backend.flows.deletions()).toEqual([]);
      });
    });

    describe('requests', () => {
      it('stores every field exactly: raw bytes, sub-ms receivedAt, multi-valued query and headers', async () => {
        // Not UTF-8 (lone 0xff/0xfe/0x80, NUL) and CRLF: raw bytes must round-trip byte for byte.
        const raw = Buffer.concat([
          Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0d, 0x0a]),
          Buffer.from('line1\r\nline2\r\n', 'latin1'),
          Buffer.from('ünï€😀', 'utf8'),
        ]);
        const msg = makeMessage({
          flowId: 'flow-exact',
          receivedAt: 1712345678901.123,
          method: 'PUT',
          path: '/sub/path',
          query: { a: '1', list: ['x', 'y'], empty: '' },
          headers: { 'content-type': 'application/octet-stream', 'x-multi': ['1', '2'], 'x-crlf': 'a b' },
          contentType: 'application/octet-stream',
          body: { nested: { arr: [1, 'two', null, true, 3.5] }, unicode: 'ünï€😀', crlf: 'a\r\nb' },
          rawBody: raw,
          clientIp: '2001:db8::1',
          attachments: [
            { id: 'att-1', field: 'file', filename: 'a.bin', contentType: 'application/pdf', size: 3, sha256: 'ab'.repeat(32) },
          ],
        });
        const copyOfRaw = Buffer.from(raw);
        expect(await backend.requests.accept(msg, { maxAttempts: 3 })).toEqual({ kind: 'stored' });
        // The caller's buffer is untouched (not detached, not modified).
        expect(Buffer.compare(msg.rawBody, copyOfRaw)).toBe(0);

        const got = await stored(msg.id);
        expect(got).toBeDefined();
        expect(Buffer.isBuffer(got!.rawBody)).toBe(true);
        expect(got!.rawBody.equals(copyOfRaw)).toBe(true);
        expect(got!.receivedAt).toBe(1712345678901.123);
        expect(got).toEqual(msg);
      });

      it('stores a message without body, content type or attachments', async () => {
        const msg = makeMessage({ method: 'GET', contentType: null, body: null, rawBody: Buffer.alloc(0), headers: {} });
        await backend.requests.accept(msg, { maxAttempts: 1 });
        const got = await stored(msg.id);
        expect(got).toBeDefined();
        expect(got!.body).toBeNull();
        expect(got!.contentType).toBeNull();
        expect(got!.rawBody.length).toBe(0);
        expect(got!.attachments).toBeUndefined();
        expect(got).toEqual(msg);
        // A text body (JSON string) is not confused with "no body".
        const text = makeMessage({ contentType: 'text/plain', body: 'null', rawBody: Buffer.from('null') });
        await backend.requests.accept(text, { maxAttempts: 1 });
        expect((await stored(text.id))!.body).toBe('null');
      });

      it('stores every byte value exactly, at sizes either side of how a backend may ship bodies', async () => {
        for (const size of [256, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1]) {
          const raw = Buffer.alloc(size);
          for (let i = 0; i < size; i++) raw[i] = (i * 131 + (i >> 8)) & 0xff;
          const copy = Buffer.from(raw);
          const msg = makeMessage({ contentType: 'application/octet-stream', body: null, rawBody: raw });
          await backend.requests.accept(msg, { maxAttempts: 1 });
          expect(raw.equals(copy)).toBe(true);
          const got = await stored(msg.id);
          expect(got!.rawBody.equals(copy)).toBe(true);
        }
      });

      it('stores large bodies exactly and leaves the caller\'s buffer usable', async () => {
        const raw = Buffer.alloc(1024 * 1024);
        for (let i = 0; i < raw.length; i++) raw[i] = (i * 7919 + (i >> 8)) & 0xff;
        const copy = Buffer.from(raw);
        const msg = makeMessage({ contentType: 'application/octet-stream', body: null, rawBody: raw });
        await backend.requests.accept(msg, { maxAttempts: 1 });
        expect(raw.length).toBe(copy.length);
        expect(raw.equals(copy)).toBe(true);
        const got = await stored(msg.id);
        expect(got!.rawBody.equals(copy)).toBe(true);

        // A compact JSON body equal to its raw bytes, and a pretty-printed one: both read back as sent.
        const compact = makeMessage({ body: { a: [1, 2, { b: 'ü' }] }, rawBody: Buffer.from('{"a":[1,2,{"b":"ü"}]}') });
        const pretty = makeMessage({ body: { a: [1, 2] }, rawBody: Buffer.from('{\n  "a": [1, 2]\n}\r\n') });
        await backend.requests.accept(compact, { maxAttempts: 1 });
        await backend.requests.accept(pretty, { maxAttempts: 1 });
        expect(await stored(compact.id)).toEqual(compact);
        expect(await stored(pretty.id)).toEqual(pretty);
      });

      it('treats the same id for the same flow as a duplicate and writes nothing', async () => {
        const msg = makeMessage({ id: 'req-dup-1' });
        expect(await backend.requests.accept(msg, { maxAttempts: 3 })).toEqual({ kind: 'stored' });
        const again = { ...msg, body: { changed: true }, rawBody: Buffer.from('changed'), receivedAt: msg.receivedAt + 5 };
        expect(await backend.requests.accept(again, { maxAttempts: 3 })).toEqual({ kind: 'duplicate' });
        expect(await stored(msg.id)).toEqual(msg);
        // No second job for the duplicate.
        const stats = await backend.queue.stats();
        expect(stats.ready + stats.inFlight + stats.delayed).toBe(1);
      });

      it('rejects the same id for another flow with REQUEST_ID_CONFLICT', async () => {
        const msg = makeMessage({ id: 'req-conflict-1', flowId: 'flow-a' });
        await backend.requests.accept(msg, { maxAttempts: 3 });
        const err = await backend.requests
          .accept({ ...msg, flowId: 'flow-b' }, { maxAttempts: 3 })
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        expect(err).toBeInstanceOf(HookdError);
        expect((err as HookdError).code).toBe('REQUEST_ID_CONFLICT');
        expect((err as HookdError).statusCode).toBe(409);
        expect((await stored(msg.id))!.flowId).toBe('flow-a');
      });

      it('gets undefined for an unknown id', async () => {
        expect(await stored(uuidv7())).toBeUndefined();
      });

      it('lists newest first with keyset pagination and a flow filter', async () => {
        const msgs: ReceivedMessage[] = [];
        for (let i = 0; i < 7; i++) {
          // UUIDv7 ids sort by creation time.
          msgs.push(makeMessage({ flowId: i % 2 === 0 ? 'flow-even' : 'flow-odd' }));
        }
        for (const m of msgs) await backend.requests.accept(m, { maxAttempts: 1 });
        const newestFirst = [...msgs].reverse().map((m) => m.id);

        expect((await backend.requests.list({ limit: 100 })).map((m) => m.id)).toEqual(newestFirst);
        const page1 = await backend.requests.list({ limit: 3 });
        expect(page1.map((m) => m.id)).toEqual(newestFirst.slice(0, 3));
        const page2 = await backend.requests.list({ limit: 3, before: page1[2]!.id });
        expect(page2.map((m) => m.id)).toEqual(newestFirst.slice(3, 6));
        const page3 = await backend.requests.list({ limit: 3, before: page2[2]!.id });
        expect(page3.map((m) => m.id)).toEqual(newestFirst.slice(6));

        const even = await backend.requests.list({ flowId: 'flow-even', limit: 100 });
        expect(even.map((m) => m.id)).toEqual(newestFirst.filter((id) => msgs.find((m) => m.id === id)!.flowId === 'flow-even'));
        const evenPage = await backend.requests.list({ flowId: 'flow-even', limit: 2, before: even[1]!.id });
        expect(evenPage.map((m) => m.id)).toEqual(even.slice(2, 4).map((m) => m.id));
        expect(await backend.requests.list({ flowId: 'flow-none', limit: 10 })).toEqual([]);
        // Listed messages are complete.
        expect(page1[0]).toEqual(msgs[6]);
      });

      it('lists by time of receipt, not by id: ids a sender chose page in the order they arrived', async () => {
        // Random-looking ids (x-request-id from a proxy), two received in the same millisecond.
        const t = Date.now();
        const ids = ['m-7f3a', 'z-01', 'a-99', 'q-5', 'b-00', 'k-42'];
        const at = [t, t + 1, t + 2, t + 2, t + 3, t + 4];
        const msgs = ids.map((id, i) => makeMessage({ id, receivedAt: at[i]!, flowId: i === 2 ? 'flow-x' : 'flow-y' }));
        for (const m of msgs) await backend.requests.accept(m, { maxAttempts: 1 });
        // Newest first; the tie at t + 2 broken by id, descending.
        const expected = ['k-42', 'b-00', 'q-5', 'a-99', 'z-01', 'm-7f3a'];
        expect((await backend.requests.list({ limit: 100 })).map((m) => m.id)).toEqual(expected);
        const pages: string[] = [];
        let before: string | undefined;
        for (;;) {
          const page = await backend.requests.list({ limit: 2, ...(before === undefined ? {} : { before }) });
          if (page.length === 0) break;
          pages.push(...page.map((m) => m.id));
          before = page[page.length - 1]!.id;
        }
        expect(pages).toEqual(expected);
        expect((await backend.requests.list({ flowId: 'flow-y', limit: 2, before: 'q-5' })).map((m) => m.id)).toEqual(['z-01', 'm-7f3a']);
        expect((await backend.requests.list({ flowId: 'flow-x', limit: 5 })).map((m) => m.id)).toEqual(['a-99']);
        // listSizes: the same rows in the same order, with the bytes their bodies take.
        for (const q of [{ limit: 100 }, { limit: 2, before: 'q-5' }, { flowId: 'flow-y', limit: 3 }]) {
          const sizes = await backend.requests.listSizes(q);
          expect(sizes.map((r) => r.id), JSON.stringify(q)).toEqual((await backend.requests.list(q)).map((m) => m.id));
          for (const r of sizes) expect(r.bytes).toBeGreaterThanOrEqual(msgs.find((m) => m.id === r.id)!.rawBody.length);
        }
      });

      it('lists a flow\'s requests of a time range oldest first, ids, times and sizes, with a keyset of values (bulk replay)', async () => {
        // Sub-ms times that are not exact in binary (…0.30000000000000004) and ids whose order
        // differs between byte order and a linguistic collation ('R' < 'a' < 'r' in bytes).
        const t = 1_800_000_000_000 + 0.1 + 0.2;
        const ids = ['r-9', 'r-1', 'R-5', 'a-3', 'r-7', 'r-0'];
        const at = [t, t + 1, t + 1, t + 1, t + 3, t + 4];
        const sizes = [10, 20, 30, 40, 50, 60];
        for (const [i, id] of ids.entries()) {
          await backend.requests.accept(makeMessage({ id, receivedAt: at[i]!, flowId: i === 4 ? 'range-other' : 'range', rawBody: Buffer.alloc(sizes[i]!, 1) }), { maxAttempts: 1 });
        }
        const list = (r: Partial<ReceivedRange>) => backend.requests.listReceived({ flowId: 'range', until: t + 100, limit: 100, ...r });
        const all = await list({});
        // Oldest first; the tie at t + 1 broken by id in byte order; the other flow's left out.
        expect(all.map(({ id, receivedAt }) => ({ id, receivedAt }))).toEqual([
          { id: 'r-9', receivedAt: t },
          { id: 'R-5', receivedAt: t + 1 },
          { id: 'a-3', receivedAt: t + 1 },
          { id: 'r-1', receivedAt: t + 1 },
          { id: 'r-0', receivedAt: t + 4 },
        ]);
        // Sizes as listSizes gives them: at least the raw bytes.
        for (const r of all) expect(r.bytes).toBeGreaterThanOrEqual(sizes[ids.indexOf(r.id)]!);
        // since inclusive, until exclusive.
        expect((await list({ since: t + 1, until: t + 4 })).map((r) => r.id)).toEqual(['R-5', 'a-3', 'r-1']);
        // Pages of two, each after the previous page's last row, given as values (as a cursor carries them).
        const pages: string[][] = [];
        let after: { receivedAt: number; id: string } | undefined;
        for (;;) {
          const page = await list({ limit: 2, ...(after ? { after } : {}) });
          if (page.length === 0) break;
          pages.push(page.map((r) => r.id));
          const last = page[page.length - 1]!;
          after = { receivedAt: Number(String(last.receivedAt)), id: last.id };
        }
        expect(pages).toEqual([['r-9', 'R-5'], ['a-3', 'r-1'], ['r-0']]);
        // A position need not be a row.
        expect((await list({ after: { receivedAt: t + 1, id: 'b' } })).map((r) => r.id)).toEqual(['r-1', 'r-0']);
        expect(await list({ flowId: 'range-none' })).toEqual([]);
      });

      it('keeps 64 concurrent accepts durable across a reopen', async () => {
        const msgs = Array.from({ length: 64 }, (_, i) =>
          makeMessage({ flowId: `flow-${i % 4}`, rawBody: Buffer.from([i, 0xff, i]) }),
        );
        const outcomes = await Promise.all(msgs.map((m) => backend.requests.accept(m, { maxAttempts: 2 })));
        expect(outcomes.every((o) => o.kind === 'stored')).toBe(true);
        await backend.close();

        const again = await reopen();
        for (const m of msgs) expect(await again.requests.get(m.id)).toEqual(m);
        expect(await again.requests.list({ limit: 1000 })).toHaveLength(64);
        const stats = await again.queue.stats();
        expect(stats.ready + stats.delayed + stats.inFlight).toBe(64);
      });
    });

    describe('payloads and retention', () => {
      const ref = (id: string, extra: Partial<AttachmentRef> = {}): AttachmentRef => ({
        id,
        contentType: 'application/octet-stream',
        size: 5,
        sha256: 'cd'.repeat(32),
        ...extra,
      });

      it('stores rawAttachment and CloudEvents exactly, and knows which attachments are referenced', async () => {
        const raw = ref(uuidv7(), { contentType: 'multipart/form-data; boundary=x', size: 300_000 });
        const file = ref(uuidv7(), { field: 'file', filename: 'a.pdf', contentType: 'application/pdf' });
        const event: CloudEvent = {
          specversion: '1.0',
          id: 'e-1',
          source: '/s',
          type: 't',
          time: '2024-01-01T00:00:00Z',
          extensions: { traceparent: '00-ab' },
          data: { n: [1, 'ü'] },
        };
        const msg = makeMessage({
          contentType: 'multipart/form-data; boundary=x',
          body: { note: 'hi' },
          rawBody: Buffer.alloc(0),
          attachments: [file],
          rawAttachment: raw,
          cloudEvent: event,
          cloudEvents: [event, { ...event, id: 'e-2', data: null }],
        });
        await backend.requests.accept(msg, { maxAttempts: 1 });
        expect(await stored(msg.id)).toEqual(msg);
        expect(await backend.requests.referencesAttachment(raw.id)).toBe(true);
        expect(await backend.requests.referencesAttachment(file.id)).toBe(true);
        expect(await backend.requests.referencesAttachment(uuidv7())).toBe(false);

        // A binary body: the raw attachment is attachments[0] (referenced once, same ref).
        const bin = ref(uuidv7());
        const binary = makeMessage({ contentType: 'application/octet-stream', body: null, rawBody: Buffer.alloc(0), attachments: [bin], rawAttachment: bin });
        await backend.requests.accept(binary, { maxAttempts: 1 });
        expect(await stored(binary.id)).toEqual(binary);
        expect(await backend.requests.referencesAttachment(bin.id)).toBe(true);

        // A duplicate's own files are not registered: the first delivery is what is stored.
        const other = ref(uuidv7());
        expect(await backend.requests.accept({ ...binary, attachments: [other], rawAttachment: other }, { maxAttempts: 1 })).toEqual({ kind: 'duplicate' });
        expect(await backend.requests.referencesAttachment(other.id)).toBe(false);
      });

      it('purges old requests with their execution and dead letter, keeps queued work and newer requests', async () => {
        const t = 1_700_000_000_000;
        const fileA = ref(uuidv7());
        const rawB = ref(uuidv7());
        const done = makeMessage({ flowId: 'flow-p', receivedAt: t - 3000, attachments: [fileA] });
        const dead = makeMessage({ flowId: 'flow-p', receivedAt: t - 2000, rawAttachment: rawB, rawBody: Buffer.alloc(0) });
        const queued = makeMessage({ flowId: 'flow-p', receivedAt: t - 1000 });
        const recent = makeMessage({ flowId: 'flow-p', receivedAt: t + 1000 });
        for (const m of [done, dead]) await backend.requests.accept(m, { maxAttempts: 1 });
        // Work the two oldest: one completes (executions + steps, ack), one is dead-lettered.
        const handled = new Set<string>();
        const consumer = backend.queue.consume(async (d) => {
          const e = await backend.executions.begin({ requestId: d.job.requestId, flowId: d.job.flowId, attempt: 1, now: t });
          await backend.executions.recordStep(e.id, { stepId: 's', type: 'transform', status: 'completed', attempt: 1, startedAt: t, finishedAt: t });
          if (d.job.requestId === done.id) await d.ack();
          else await d.deadLetter('gave up');
          handled.add(d.job.requestId);
        }, { concurrency: 2 });
        await waitFor(() => handled.size === 2, 'both jobs handled');
        await consumer.stop();
        for (const m of [queued, recent]) await backend.requests.accept(m, { maxAttempts: 1 });
        expect((await backend.queue.deadLetters({ flowId: 'flow-p', limit: 10 })).map((j) => j.requestId)).toEqual([dead.id]);
        const doneExecution = await backend.executions.getByRequest(done.id);

        // Batches of one: every call commits one request and says whether more are due.
        const first = await backend.requests.purgeOlderThan(t, 1);
        expect(first).toEqual({ requests: 1, attachmentIds: [fileA.id], more: true });
        const second = await backend.requests.purgeOlderThan(t, 1);
        expect(second).toEqual({ requests: 1, attachmentIds: [rawB.id], more: true });
        expect(await backend.requests.purgeOlderThan(t, 1)).toEqual({ requests: 0, attachmentIds: [], more: false });

        expect(await backend.requests.get(done.id)).toBeUndefined();
        expect(await backend.requests.get(dead.id)).toBeUndefined();
        expect(await backend.executions.getByRequest(done.id)).toBeUndefined();
        expect(await backend.executions.get(doneExecution!.id)).toBeUndefined();
        expect(await backend.executions.getByRequest(dead.id)).toBeUndefined();
        expect(await backend.queue.deadLetters({ flowId: 'flow-p', limit: 10 })).toEqual([]);
        expect(await backend.requests.referencesAttachment(fileA.id)).toBe(false);
        expect(await backend.requests.referencesAttachment(rawB.id)).toBe(false);
        // Still queued: kept until its job is done. Newer than the cutoff: kept.
        expect(await backend.requests.get(queued.id)).toEqual(queued);
        expect(await backend.requests.get(recent.id)).toEqual(recent);
        expect((await backend.queue.stats()).ready).toBe(2);
      });
    });

    describe('executions', () => {
      const step = (stepId: string, attempt: number, extra: Partial<StepRecord> = {}): StepRecord => ({
        stepId,
        type: 'transform',
        status: 'completed',
        attempt,
        startedAt: 1_700_000_000_000.5,
        finishedAt: 1_700_000_000_002.25,
        input: '{"a":1}',
        output: '{"b":2}',
        ...extra,
      });

      it('begins once per request: a second begin continues the same execution', async () => {
        const requestId = uuidv7();
        const first = await backend.executions.begin({ requestId, flowId: 'flow-x', attempt: 1, now: 1000.5, queueDelayMs: 1.25 });
        expect(first).toMatchObject({
          requestId,
          flowId: 'flow-x',
          status: 'running',
          attempts: 1,
          createdAt: 1000.5,
          queueDelayMs: 1.25,
          steps: [],
        });
        expect(first.cursor).toBeUndefined();
        expect(first.finishedAt).toBeUndefined();

        await backend.executions.recordStep(first.id, step('s1', 1), { nextStep: 1, input: { deep: { list: [1, 2] } } });
        await backend.executions.setStatus(first.id, 'retrying', 1500, 'HTTP 503 from upstream');
        const retrying = await backend.executions.get(first.id);
        expect(retrying).toMatchObject({ status: 'retrying', error: 'HTTP 503 from upstream', updatedAt: 1500 });
        expect(retrying!.finishedAt).toBeUndefined();

        const second = await backend.executions.begin({ requestId, flowId: 'flow-x', attempt: 2, now: 2000, queueDelayMs: 99 });
        expect(second.id).toBe(first.id);
        expect(second.status).toBe('running');
        expect(second.attempts).toBe(2);
        expect(second.createdAt).toBe(1000.5);
        expect(second.queueDelayMs).toBe(1.25); // recorded on create only
        expect(second.steps).toEqual([step('s1', 1)]);
        expect(second.cursor).toEqual({ nextStep: 1, input: { deep: { list: [1, 2] } } });
        expect(await backend.executions.getByRequest(requestId)).toMatchObject({ id: first.id, attempts: 2 });
      });

      it('idsByRequest: the execution id of each request that has one', async () => {
        const [a, b, none] = [uuidv7(), uuidv7(), uuidv7()];
        const ea = await backend.executions.begin({ requestId: a, flowId: 'flow-x', attempt: 1, now: 1000 });
        const eb = await backend.executions.begin({ requestId: b, flowId: 'flow-y', attempt: 1, now: 1000 });
        const ids = await backend.executions.idsByRequest([a, none, b]);
        expect([...ids.entries()].sort()).toEqual([[a, ea.id], [b, eb.id]].sort());
        expect((await backend.executions.idsByRequest([])).size).toBe(0);
      });

      it('begin returns a completed or filtered execution as it is (a repeat delivery after a lost ack)', async () => {
        for (const final of ['completed', 'filtered'] as const) {
          const requestId = uuidv7();
          const first = await backend.executions.begin({ requestId, flowId: 'flow-x', attempt: 1, now: 1000 });
          await backend.executions.recordStep(first.id, step('s1', 1));
          await backend.executions.setStatus(first.id, final, 1100);
          const again = await backend.executions.begin({ requestId, flowId: 'flow-x', attempt: 2, now: 2000 });
          expect(again).toMatchObject({ id: first.id, status: final, attempts: 1, finishedAt: 1100, steps: [step('s1', 1)] });
          expect(await backend.executions.get(first.id)).toMatchObject({ status: final, attempts: 1 });
        }
        // A dead one is reopened: retryDead put its job back on purpose.
        const requestId = uuidv7();
        const dead = await backend.executions.begin({ requestId, flowId: 'flow-x', attempt: 1, now: 1000 });
        await backend.executions.setStatus(dead.id, 'dead', 1100, 'gave up');
        expect(await backend.executions.begin({ requestId, flowId: 'flow-x', attempt: 1, now: 3000 })).toMatchObject({ status: 'running' });
      });

      it('appends steps in order, keeps the cursor unless given, and finalises status', async () => {
        const exec = await backend.executions.begin({ requestId: uuidv7(), flowId: 'flow-y', attempt: 1, now: 10 });
        expect(exec.queueDelayMs).toBeUndefined();
        const s1 = step('s1', 1);
        const s2 = step('s2', 1, { type: 'http', status: 'failed', error: 'timeout', output: undefined });
        const s3 = step('s2', 2, { type: 'http' });
        await backend.executions.recordStep(exec.id, s1, { nextStep: 1, input: { v: 1 } });
        await backend.executions.recordStep(exec.id, s2); // no cursor: the stored one stays
        let got = await backend.executions.get(exec.id);
        expect(got!.steps).toEqual([s1, s2]);
        expect(got!.steps[1]!.output).toBeUndefined();
        expect(got!.cursor).toEqual({ nextStep: 1, input: { v: 1 } });
        await backend.executions.recordStep(exec.id, s3, { nextStep: 2, input: 'text input' });
        await backend.executions.setStatus(exec.id, 'completed', 5000);
        got = await backend.executions.get(exec.id);
        expect(got!.steps).toEqual([s1, s2, s3]);
        expect(got!.cursor).toEqual({ nextStep: 2, input: 'text input' });
        expect(got).toMatchObject({ status: 'completed', finishedAt: 5000, updatedAt: 5000 });
        expect(got!.error).toBeUndefined();

        for (const status of ['filtered', 'dead'] as const) {
          const e = await backend.executions.begin({ requestId: uuidv7(), flowId: 'flow-y', attempt: 1, now: 10 });
          await backend.executions.setStatus(e.id, status, 777, status === 'dead' ? 'gave up' : undefined);
          expect(await backend.executions.get(e.id)).toMatchObject({ status, finishedAt: 777 });
        }
      });

      it('a step record that carries the final status writes both at once; a finished execution takes neither', async () => {
        const exec = await backend.executions.begin({ requestId: uuidv7(), flowId: 'flow-f', attempt: 1, now: 10 });
        const s1 = step('s1', 1);
        const s2 = step('s2', 1, { type: 'http' });
        await backend.executions.recordStep(exec.id, s1, { nextStep: 1, input: { v: 1 } });
        await backend.executions.recordStep(exec.id, s2, { nextStep: 2, input: { v: 2 } }, { status: 'completed', now: 6000 });
        let got = await backend.executions.get(exec.id);
        expect(got).toMatchObject({ status: 'completed', finishedAt: 6000, updatedAt: 6000, cursor: { nextStep: 2, input: { v: 2 } } });
        expect(got!.steps).toEqual([s1, s2]);
        expect(got!.error).toBeUndefined();
        // Completed: a late record with a status of its own changes nothing.
        await backend.executions.recordStep(exec.id, step('s2', 2), undefined, { status: 'retrying', now: 7000, error: 'late' });
        got = await backend.executions.get(exec.id);
        expect(got).toMatchObject({ status: 'completed', finishedAt: 6000, updatedAt: 6000, steps: [s1, s2] });

        // A retry (not final): status, error and updatedAt change, finishedAt stays unset.
        const other = await backend.executions.begin({ requestId: uuidv7(), flowId: 'flow-f', attempt: 1, now: 10 });
        await backend.executions.recordStep(other.id, step('s1', 1, { status: 'failed', error: 'timed out' }), undefined, { status: 'retrying', now: 50, error: 'step "s1": timed out' });
        got = await backend.executions.get(other.id);
        expect(got).toMatchObject({ status: 'retrying', updatedAt: 50, error: 'step "s1": timed out' });
        expect(got!.finishedAt).toBeUndefined();
        await backend.executions.recordStep(other.id, step('s1', 2), undefined, { status: 'filtered', now: 60 });
        expect(await backend.executions.get(other.id)).toMatchObject({ status: 'filtered', finishedAt: 60, updatedAt: 60 });
        expect((await backend.executions.get(other.id))!.error).toBeUndefined();
        await expect(backend.executions.recordStep(uuidv7(), s1, undefined, { status: 'completed', now: 1 })).rejects.toMatchObject({ code: 'NOT_FOUND' });
      });

      it('moveStatus moves only the executions in the `from` status, sets or clears finishedAt, keeps the error', async () => {
        const make = async (status: 'dead' | 'completed' | 'running') => {
          const e = await backend.executions.begin({ requestId: uuidv7(), flowId: 'flow-m', attempt: 1, now: 10 });
          if (status !== 'running') await backend.executions.setStatus(e.id, status, 20, status === 'dead' ? 'gave up' : undefined);
          return e;
        };
        const [dead1, dead2, done, running] = [await make('dead'), await make('dead'), await make('completed'), await make('running')];
        const all = [dead1, dead2, done, running].map((e) => e.requestId);
        expect(await backend.executions.moveStatus([], 'dead', 'retrying', 30)).toBe(0);
        expect(await backend.executions.moveStatus([...all, uuidv7()], 'dead', 'retrying', 30.5)).toBe(2);
        for (const e of [dead1, dead2]) {
          const got = await backend.executions.get(e.id);
          expect(got).toMatchObject({ status: 'retrying', updatedAt: 30.5, error: 'gave up' });
          expect(got!.finishedAt).toBeUndefined();
        }
        expect(await backend.executions.get(done.id)).toMatchObject({ status: 'completed', finishedAt: 20, updatedAt: 20 });
        expect(await backend.executions.get(running.id)).toMatchObject({ status: 'running', updatedAt: 10 });
        // And back: a final status sets finishedAt.
        expect(await backend.executions.moveStatus([dead1.requestId], 'retrying', 'dead', 40)).toBe(1);
        expect(await backend.executions.get(dead1.id)).toMatchObject({ status: 'dead', finishedAt: 40, error: 'gave up' });
        expect(await backend.executions.get(dead2.id)).toMatchObject({ status: 'retrying' });
      });

      it("leaves a completed or filtered execution as it is: a late status or step of a delivery that lost its lease changes nothing", async () => {
        for (const final of ['completed', 'filtered'] as const) {
          const e = await backend.executions.begin({ requestId: uuidv7(), flowId: 'flow-late', attempt: 2, now: 10 });
          await backend.executions.recordStep(e.id, step('s1', 2));
          await backend.executions.setStatus(e.id, final, 20);
          // The instance that ran attempt 1 stalled, lost its lease, and now writes what it saw.
          await backend.executions.recordStep(e.id, step('s1', 1, { status: 'failed', error: 'timed out' }));
          await backend.executions.setStatus(e.id, 'retrying', 30, 'step "s1" (http): timed out');
          await backend.executions.setStatus(e.id, 'dead', 31, 'gave up');
          const got = await backend.executions.get(e.id);
          expect(got).toMatchObject({ status: final, finishedAt: 20, updatedAt: 20 });
          expect(got!.error).toBeUndefined();
          expect(got!.steps).toEqual([step('s1', 2)]);
        }
        // Not so a dead one: a retried dead letter reopens it.
        const dead = await backend.executions.begin({ requestId: uuidv7(), flowId: 'flow-late', attempt: 1, now: 10 });
        await backend.executions.setStatus(dead.id, 'dead', 20, 'gave up');
        await backend.executions.setStatus(dead.id, 'retrying', 30);
        await backend.executions.recordStep(dead.id, step('s1', 2));
        expect(await backend.executions.get(dead.id)).toMatchObject({ status: 'retrying', steps: [step('s1', 2)] });
      });

      it('rejects steps and status changes of an unknown execution with NOT_FOUND', async () => {
        const id = uuidv7();
        await expect(backend.executions.recordStep(id, step('s1', 1))).rejects.toMatchObject({ code: 'NOT_FOUND', statusCode: 404 });
        await expect(backend.executions.setStatus(id, 'completed', 1)).rejects.toMatchObject({ code: 'NOT_FOUND' });
        expect(await backend.executions.get(id)).toBeUndefined();
        expect(await backend.executions.getByRequest(id)).toBeUndefined();
      });

      it('lists newest first, filtered by flow and status, with keyset pagination', async () => {
        const ids: string[] = [];
        for (let i = 0; i < 6; i++) {
          const e = await backend.executions.begin({
            requestId: uuidv7(),
            flowId: i < 4 ? 'flow-p' : 'flow-q',
            attempt: 1,
            now: 100 + i,
          });
          ids.push(e.id);
          if (i % 2 === 0) await backend.executions.setStatus(e.id, 'completed', 200 + i);
          await backend.executions.recordStep(e.id, step(`only-${i}`, 1));
        }
        const newest = [...ids].reverse();
        const all = await backend.executions.list({ limit: 100 });
        expect(all.map((e) => e.id)).toEqual(newest);
        expect(all[0]!.steps.map((s) => s.stepId)).toEqual(['only-5']);

        const page1 = await backend.executions.list({ limit: 4 });
        const page2 = await backend.executions.list({ limit: 4, before: page1[3]!.id });
        expect([...page1, ...page2].map((e) => e.id)).toEqual(newest);

        const p = await backend.executions.list({ flowId: 'flow-p', limit: 100 });
        expect(p.map((e) => e.id)).toEqual(newest.slice(2));
        const done = await backend.executions.list({ status: 'completed', limit: 100 });
        expect(done.map((e) => e.id)).toEqual([ids[4], ids[2], ids[0]]);
        const doneP = await backend.executions.list({ flowId: 'flow-p', status: 'completed', limit: 1, before: ids[2] });
        expect(doneP.map((e) => e.id)).toEqual([ids[0]]);
        expect(await backend.executions.list({ status: 'dead', limit: 10 })).toEqual([]);
      });
    });

    describe('availability', () => {
      it('checkWritable resolves on a healthy backend', async () => {
        await expect(backend.checkWritable()).resolves.toBeUndefined();
      });

      it('rejects with 503 once closed, never pretends to store', async () => {
        await backend.close();
        await backend.close(); // idempotent
        await expect503(backend.requests.accept(makeMessage(), { maxAttempts: 1 }));
        await expect503(backend.checkWritable());
      });
    });
  });
}
