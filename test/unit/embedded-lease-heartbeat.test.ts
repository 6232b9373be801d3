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
});
