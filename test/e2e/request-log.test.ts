import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturingLogger } from '../helpers/capturing-logger.js';
import { type RunningHookd, startHookd } from '../helpers/hookd.js';

/**
 * LOG_LEVEL=debug: one line per answered request (method, path, status, time) and the reason of a
 * refused one, for an operator chasing a sender's 4xx; at info: none (they cost more than they
 * tell at thousands a second). Never the query string nor a header (tokens may be there).
 */

const call = (h: RunningHookd, body: string) =>
  fetch(`${h.url}/hook/f?token=query-token-never-logged`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer header-token-never-logged' },
    body,
  });

describe('per-request log lines', () => {
  const debug = capturingLogger('debug');
  const info = capturingLogger('info');
  let hd: RunningHookd;
  let hi: RunningHookd;
  beforeAll(async () => {
    hd = await startHookd({ WORKER_CONCURRENCY: '0' }, { logger: debug.logger });
    hi = await startHookd({ WORKER_CONCURRENCY: '0' }, { logger: info.logger });
    for (const h of [hd, hi]) expect((await h.api('PUT', '/api/flows/f', { steps: [] })).status).toBe(201);
  });
  afterAll(async () => {
    await hd?.close();
    await hi?.close();
  });

  it('at debug: each answer, and the reason of a refusal, without query or headers', async () => {
    expect((await call(hd, '{"ok":1}')).status).toBe(200);
    expect((await call(hd, '{"broken"')).status).toBe(400);
    const done = debug.lines.filter((l) => l.msg === 'request completed' && l.url === '/hook/f');
    expect(done.map((l) => l.status)).toEqual([200, 400]);
    expect(done[0]).toMatchObject({ level: 20, method: 'POST', reqId: expect.any(String), ms: expect.any(Number) });
    expect(debug.lines.find((l) => l.msg === 'request refused')).toMatchObject({ level: 20, status: 400, code: 'INVALID_BODY', url: '/hook/f' });
    const text = JSON.stringify(debug.lines);
    expect(text).not.toContain('never-logged');
  });

  it('at info: no line per request', async () => {
    expect((await call(hi, '{"ok":1}')).status).toBe(200);
    expect((await call(hi, '{"broken"')).status).toBe(400);
    expect(info.lines.filter((l) => l.reqId !== undefined)).toEqual([]);
  });
});
