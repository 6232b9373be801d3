/**
 * A dead letter put back (one, or in bulk) makes its execution `retrying` at once — not `dead` until
 * it runs — on every backend: SQLite (in the revive's transaction), PostgreSQL's queue (in its
 * statement), RabbitMQ (the execution moved in PostgreSQL right before the job is published).
 * Needs the local PostgreSQL and RabbitMQ, as the distributed tests do (no skip).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { everyBackend } from '../helpers/every-backend.js';
import { type RunningHookd, startHookd, waitFor } from '../helpers/hookd.js';

const { backends: BACKENDS, cleanUp } = everyBackend('dlr');

let up = false;
let received = 0;
const receiver = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (up) received++;
    res.writeHead(up ? 200 : 503).end();
  });
});
let port = 0;

beforeAll(async () => {
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  port = (receiver.address() as AddressInfo).port;
});

afterAll(async () => {
  receiver.close();
  await cleanUp(['dlr']);
});

describe.sequential.each(BACKENDS)('%s', (_name, env) => {
  let h: RunningHookd;
  beforeAll(async () => {
    h = await startHookd(env);
  });
  afterAll(() => h?.close());

  it('a dead letter put back (one, or in bulk) is `retrying` until it runs, then completes', async () => {
    up = false;
    received = 0;
    expect((await h.api('PUT', '/api/flows/dlr', { steps: [{ id: 'call', type: 'http', url: `http://127.0.0.1:${port}/` }], retry: { maxAttempts: 1 } })).status).toBe(201);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${h.url}/hook/dlr`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      ids.push(((await res.json()) as { requestId: string }).requestId);
    }
    const executionOf = async (requestId: string) => {
      const { items } = (await h.api('GET', '/api/executions?flowId=dlr&limit=100')).body as { items: Array<{ requestId: string; status: string; finishedAt?: string }> };
      return items.find((e) => e.requestId === requestId);
    };
    const dead = async () => (await h.api('GET', '/api/dead-letters?flowId=dlr')).body.items as Array<{ id: string; requestId: string }>;
    await waitFor(async () => (await dead()).length === 3, 15_000);
    for (const id of ids) expect((await executionOf(id))?.status).toBe('dead');

    // Stopped: what is put back waits, so what it shows meanwhile can be seen.
    expect((await h.api('POST', '/api/flows/dlr/stop')).status).toBe(200);
    const first = (await dead()).find((d) => d.requestId === ids[0])!;
    expect((await h.api('POST', `/api/dead-letters/${first.id}/retry`)).status).toBe(202);
    expect(await executionOf(ids[0]!)).toMatchObject({ status: 'retrying' });
    expect((await executionOf(ids[0]!))?.finishedAt).toBeUndefined();
    expect((await executionOf(ids[1]!))?.status).toBe('dead');
    expect((await h.api('POST', '/api/dead-letters/retry', { flowId: 'dlr' })).body).toEqual({ retried: 2, remaining: 0 });
    for (const id of ids) expect((await executionOf(id))?.status).toBe('retrying');
    // Listed by status as they are.
    const retrying = (await h.api('GET', '/api/executions?flowId=dlr&status=retrying')).body.items as unknown[];
    expect(retrying).toHaveLength(3);

    up = true;
    expect((await h.api('POST', '/api/flows/dlr/start')).status).toBe(200);
    await waitFor(async () => {
      for (const id of ids) if ((await executionOf(id))?.status !== 'completed') return false;
      return true;
    }, 15_000);
    expect(received).toBe(3);
  });
});
