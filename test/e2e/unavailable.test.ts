import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SqliteBackend } from '../../src/store/sqlite/index.js';
import { type RunningHookd, startHookd, waitFor } from '../helpers/hookd.js';

/** Never acknowledge what is not stored: a store failure is a 503 with Retry-After, never a 2xx. */
let h: RunningHookd;
beforeAll(async () => {
  h = await startHookd({ WORKER_CONCURRENCY: '0' });
  expect((await h.api('PUT', '/api/flows/f', { steps: [] })).status).toBe(201);
});
afterAll(() => h.close());

const post = (id: string) =>
  fetch(`${h.url}/hook/f`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': id }, body: '{"n":1}' });

describe('storage failure', () => {
  it('answers 503 + Retry-After when the writer dies with the request, stores nothing, then recovers', async () => {
    const writer = (h.app.backend as SqliteBackend).writer;
    writer.crashOnNextBatch(); // the SQLite writer thread dies on receipt of the next batch
    const res = await post('lost-1');
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    const body = (await res.json()) as { error: string };
    expect(body.error).toBe('STORE_UNAVAILABLE');
    expect((await h.api('GET', '/api/requests/lost-1')).status).toBe(404);

    // A new writer thread is started; requests are committed again.
    const ok = await waitFor(async () => {
      const r = await post(`back-${Date.now()}`);
      return r.status === 200 ? r : undefined;
    }, 10_000, 100);
    const { requestId } = (await ok!.json()) as { requestId: string };
    expect((await h.api('GET', `/api/requests/${requestId}`)).status).toBe(200);
    expect((await fetch(`${h.url}/readyz`)).status).toBe(200);
  });

  it('/readyz is 503 while the store cannot write', async () => {
    const writer = (h.app.backend as SqliteBackend).writer;
    writer.crashOnNextBatch();
    const ready = await fetch(`${h.url}/readyz`); // its heartbeat write is the batch that dies
    expect(ready.status).toBe(503);
    expect(ready.headers.get('retry-after')).not.toBeNull();
  });
});
