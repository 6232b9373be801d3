import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/store/backend.js';
import { openSqliteBackend } from '../../src/store/sqlite/index.js';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function open(leaseMs: number): Promise<{ backend: Backend; file: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hookd-heartbeat-'));
  const file = path.join(dir, 'hookd.db');
  const backend = await openSqliteBackend({ path: file, leaseMs, busyTimeoutMs: 100, logger: quiet });
  cleanups.push(async () => {
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { backend, file };
}

describe('embedded queue: the heartbeat extends only the leases a consumer holds', () => {
  it('a job whose ack write failed is delivered again while the consumer stays busy', async () => {
    const { backend, file } = await open(300);
    const seen: string[] = [];
    const consumer = backend.queue.consume(
      async (d) => {
        seen.push(`${d.job.requestId}#${d.job.attempts}`);
        if (d.job.requestId === 'busy') return new Promise<void>(() => {}); // keeps a slot, and the heartbeat, going
        if (d.job.attempts > 1) return; // the redelivery: acked
        // Another connection holds the write lock past the busy timeout: this job's ack fails (503).
        const other = new Database(file, { timeout: 0 });
        other.exec('BEGIN IMMEDIATE');
        setTimeout(() => {
          other.exec('ROLLBACK');
          other.close();
        }, 250);
      },
      { concurrency: 4 },
    );
    cleanups.push(() => consumer.stop({ graceMs: 0 }));
    await backend.queue.enqueue({ flowId: 'f', requestId: 'busy', maxAttempts: 5 });
    await new Promise((r) => setTimeout(r, 100));
    await backend.queue.enqueue({ flowId: 'f', requestId: 'lost-ack', maxAttempts: 5 });

    const until = Date.now() + 5_000;
    while (!seen.includes('lost-ack#2') && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
    expect(seen).toContain('lost-ack#1');
    expect(seen).toContain('lost-ack#2');
    // The busy job's lease is still extended by the heartbeat: it was never delivered again.
    expect(seen.filter((s) => s.startsWith('busy'))).toEqual(['busy#1']);
  });

  it('a job whose give-back (requeue) failed stays held, and a later requeue gives it back without spending an attempt', async () => {
    const { backend, file } = await open(300);
    const seen: string[] = [];
    const results: boolean[] = [];
    const consumer = backend.queue.consume(
      async (d) => {
        seen.push(`${d.job.requestId}#${d.job.attempts}`);
        if (seen.length > 1) return; // the redelivery: acked
        // The database is "down" (another connection holds its write lock past the busy timeout):
        // the requeue fails…
        const other = new Database(file, { timeout: 0 });
        other.exec('BEGIN IMMEDIATE');
        setTimeout(() => {
          other.exec('ROLLBACK');
          other.close();
        }, 500);
        results.push(await d.requeue('store unavailable'));
        // …the job stays held past its lease (300 ms) while the heartbeat extends it…
        await new Promise((r) => setTimeout(r, 700));
        // …and once the database is back it is given back, its attempt not spent.
        results.push(await d.requeue('store unavailable'));
      },
      { concurrency: 2 },
    );
    cleanups.push(() => consumer.stop({ graceMs: 0 }));
    await backend.queue.enqueue({ flowId: 'f', requestId: 'held', maxAttempts: 1 });
    const until = Date.now() + 5_000;
    while (seen.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
    expect(results).toEqual([false, true]);
    // One attempt allowed, and delivered twice: the held delivery was never counted.
    expect(seen).toEqual(['held#1', 'held#1']);
    expect((await backend.queue.stats()).dead).toBe(0);
  });

  it('a prefetched job whose lease ran out while no heartbeat got through is not started (another consumer has it)', async () => {
    const { backend, file } = await open(300);
    const seen: string[] = [];
    const releaseA = deferredVoid();
    // C1: one slot, busy with A, and B prefetched behind it.
    const c1 = backend.queue.consume(
      async (d) => {
        seen.push(`c1:${d.job.requestId}#${d.job.attempts}`);
        if (d.job.requestId === 'A') await releaseA.promise;
      },
      { concurrency: 1, prefetch: 1 },
    );
    cleanups.push(() => c1.stop({ graceMs: 0 }));
    await backend.queue.enqueue({ flowId: 'f', requestId: 'A', maxAttempts: 5 });
    await waitUntil(() => seen.includes('c1:A#1'));
    await backend.queue.enqueue({ flowId: 'f', requestId: 'B', maxAttempts: 5 });
    await new Promise((r) => setTimeout(r, 100)); // C1 claims B ahead of its slot
    // C1's heartbeats stop getting through (its connection, in a cluster) for longer than the
    // lease, while C2's claims work: B's lease runs out and C2 takes it.
    const beating = c1 as unknown as { extendLeases: (...a: unknown[]) => Promise<unknown> };
    const extend = beating.extendLeases;
    beating.extendLeases = () => Promise.reject(new Error('heartbeat lost'));
    await new Promise((r) => setTimeout(r, 500));
    const c2 = backend.queue.consume(
      async (d) => {
        seen.push(`c2:${d.job.requestId}#${d.job.attempts}`);
        await new Promise((r) => setTimeout(r, 300));
      },
      { concurrency: 1 },
    );
    cleanups.push(() => c2.stop({ graceMs: 0 }));
    await waitUntil(() => seen.some((x) => x.startsWith('c2:B')));
    beating.extendLeases = extend;
    // A ends: C1's slot frees, and its stale copy of B must not start.
    releaseA.resolve();
    await new Promise((r) => setTimeout(r, 500));
    expect(seen.filter((x) => x.includes(':B'))).toEqual(['c2:B#2']);
  });
});

function deferredVoid(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

async function waitUntil(cond: () => boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
