import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SqliteBackend } from '../../src/store/sqlite/index.js';
import { type RunningHookd, startHookd, waitFor } from '../helpers/hookd.js';
import { capturingLogger } from '../helpers/capturing-logger.js';

/**
 * What an operator reads while something stays broken: one line per kind of failure per window,
 * naming flow and step, never one line per request and retry (a receiver down under 100 requests
 * a second would otherwise write hundreds of lines a second and bury everything else).
 */

/** A loopback port nobody listens on (connection refused). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

const N = 40;
const post = (h: RunningHookd, flow: string, headers: Record<string, string> = {}) =>
  fetch(`${h.url}/hook/${flow}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"n":1}' });
const count = (lines: Array<Record<string, unknown>>, msg: RegExp) => lines.filter((l) => msg.test(String(l.msg))).length;

let h: RunningHookd;
const log = capturingLogger();
beforeAll(async () => {
  h = await startHookd({}, { logger: log.logger });
  const port = await closedPort();
  const flow = { steps: [{ id: 'deliver', type: 'http', url: `http://127.0.0.1:${port}/in` }], retry: { maxAttempts: 2, backoffMs: 10, maxBackoffMs: 20 } };
  expect((await h.api('PUT', '/api/flows/down', flow)).status).toBe(201);
  expect((await h.api('PUT', '/api/flows/locked', { trigger: { type: 'webhook', auth: { type: 'apiKey', secrets: ['the-right-key-123'] } }, steps: [] })).status).toBe(201);
  expect((await h.api('PUT', '/api/flows/stored', { steps: [] })).status).toBe(201);
});
afterAll(() => h?.close());

describe('log volume under a sustained failure', () => {
  it('a receiver down: the first retry and the first dead execution are logged with flow and step, the rest summed up', async () => {
    for (let i = 0; i < N; i++) expect((await post(h, 'down')).status).toBe(200);
    await waitFor(async () => (await h.api('GET', '/api/queue')).body.dead === N, 15_000, 50);
    const retrying = log.lines.filter((l) => /^step failed; retrying/.test(String(l.msg)));
    const dead = log.lines.filter((l) => /^execution dead/.test(String(l.msg)));
    expect(retrying.length).toBeGreaterThanOrEqual(1);
    expect(retrying.length).toBeLessThanOrEqual(3);
    expect(dead.length).toBeGreaterThanOrEqual(1);
    expect(dead.length).toBeLessThanOrEqual(3);
    expect(retrying[0]).toMatchObject({ flowId: 'down', stepId: 'deliver', error: expect.stringMatching(/ECONNREFUSED/) });
    expect(dead[0]).toMatchObject({ flowId: 'down', stepId: 'deliver' });
  });

  it('a sender with a wrong key: one line, not one per call', async () => {
    for (let i = 0; i < N; i++) expect((await post(h, 'locked', { 'x-api-key': 'wrong-key-000000' })).status).toBe(403);
    expect(count(log.lines, /^webhook call refused/)).toBeLessThanOrEqual(2);
    expect(log.lines.find((l) => /^webhook call refused/.test(String(l.msg)))).toMatchObject({ flowId: 'locked', reason: expect.any(String) });
  });

  it('the store failing: one line per window for the 503s, not one (with a stack) per request', async () => {
    const writer = (h.app.backend as SqliteBackend).writer;
    let unavailable = 0;
    for (let i = 0; i < N; i++) {
      writer.crashOnNextBatch();
      const res = await post(h, 'stored');
      if (res.status === 503) unavailable++;
      await res.text();
    }
    expect(unavailable).toBeGreaterThanOrEqual(N / 2);
    const lines = log.lines.filter((l) => /^answered 503 STORE_UNAVAILABLE/.test(String(l.msg)));
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines.length).toBeLessThanOrEqual(3);
    expect(lines[0]).toMatchObject({ code: 'STORE_UNAVAILABLE', url: '/hook/stored', reason: expect.stringMatching(/^Storage is unavailable/) });
    expect(count(log.lines, /Storage is unavailable|store unavailable/i)).toBe(0); // not in the message: it varies along an outage
  });
});
