import Fastify from 'fastify';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { opsRoutes, READY_CHECK_TIMEOUT_MS } from '../../src/http/ops-routes.js';

async function app(checkWritable: () => Promise<void>) {
  const a = Fastify();
  await a.register(opsRoutes, { checkWritable, isShuttingDown: () => false, metrics: new Registry() });
  return a;
}

describe('/readyz', () => {
  it('is 200 when a write can be committed, 503 with the reason when not', async () => {
    const ok = await app(async () => {});
    expect((await ok.inject({ url: '/readyz' })).statusCode).toBe(200);
    const down = await app(async () => {
      throw new Error('connection refused');
    });
    const res = await down.inject({ url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json()).toEqual({ status: 'unavailable', reason: 'connection refused' });
  });

  it('answers 503 in bounded time when the check hangs (a connection that died silently)', async () => {
    const hung = await app(() => new Promise<void>(() => {}));
    const t0 = Date.now();
    const res = await hung.inject({ url: '/readyz' });
    const took = Date.now() - t0;
    expect(res.statusCode).toBe(503);
    expect(res.json().reason).toMatch(/no answer/);
    expect(took).toBeGreaterThanOrEqual(READY_CHECK_TIMEOUT_MS - 50);
    expect(took).toBeLessThan(READY_CHECK_TIMEOUT_MS + 1_000);
  });
});
