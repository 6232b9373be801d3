/**
 * Asana (auth {type: asana}): its handshake hands over the signing secret (X-Hook-Secret), which
 * the flow learns while it holds none, within minutes of its last save, and echoes; events then
 * verify by X-Hook-Signature (hex HMAC-SHA256 of the body).
 */
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizeFlow } from '../../src/core/flow.js';
import { ASANA_HANDSHAKE_WINDOW_MS, asanaHandshake } from '../../src/ingress/asana-handshake.js';
import { everyBackend } from '../helpers/every-backend.js';
import { type RunningHookd, startHookd } from '../helpers/hookd.js';

let h: RunningHookd;
beforeAll(async () => {
  h = await startHookd({ WORKER_CONCURRENCY: '0' });
});
afterAll(() => h.close());

const storedCount = async (flowId: string) => ((await h.api('GET', `/api/requests?flowId=${flowId}`)).body.items as unknown[]).length;
const handshake = (flowId: string, secret: string | string[]) =>
  fetch(`${h.url}/hook/${flowId}`, { method: 'POST', headers: [...(Array.isArray(secret) ? secret : [secret]).map((s): [string, string] => ['x-hook-secret', s])] });
const event = (flowId: string, body: string, secret?: string) =>
  fetch(`${h.url}/hook/${flowId}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(secret === undefined ? {} : { 'x-hook-signature': createHmac('sha256', secret).update(body).digest('hex') }) },
    body,
  });

describe('asana', () => {
  it('learns the secret of the first handshake and echoes it; events verify with it; a second handshake is refused until the flow is saved without it', async () => {
    const put = await h.api('PUT', '/api/flows/asana', { trigger: { type: 'webhook', auth: { type: 'asana' } }, steps: [] });
    expect(put.status).toBe(201);
    expect(put.body.trigger.auth).toEqual({ type: 'asana' });
    const body = JSON.stringify({ events: [{ action: 'changed', resource: { gid: '1', resource_type: 'task' } }] });
    // No secret yet: every event is refused.
    expect((await event('asana', body, 'whatever-secret-1')).status).toBe(403);
    // Not one usable value: refused, nothing learned.
    expect((await handshake('asana', 'short')).status).toBe(400);
    expect((await handshake('asana', ['a'.repeat(32), 'b'.repeat(32)])).status).toBe(400);
    const secret = 'd5b1e6ac0a5d4c47b1f1b0a06b6e5a1f';
    const res = await handshake('asana', secret);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-hook-secret')).toBe(secret);
    expect(await storedCount('asana')).toBe(0);
    // Held, masked in the API like any secret.
    const flow = (await h.api('GET', '/api/flows/asana')).body;
    expect(flow.trigger.auth.type).toBe('asana');
    expect(flow.trigger.auth.secrets).toHaveLength(1);
    expect(JSON.stringify(flow)).not.toContain(secret);
    // Events: signed with it → stored; another secret → 403; unsigned → 401.
    expect((await event('asana', body, secret)).status).toBe(200);
    expect((await event('asana', body, 'another-secret-0123')).status).toBe(403);
    expect((await event('asana', body)).status).toBe(401);
    expect(await storedCount('asana')).toBe(1);
    // Someone else's handshake now: refused, the secret kept.
    expect((await handshake('asana', 'f'.repeat(32))).status).toBe(403);
    expect((await event('asana', body, secret)).status).toBe(200);
    // The webhook created again: save the flow without its secret, and the next handshake's is learned.
    expect((await h.api('PUT', '/api/flows/asana', { trigger: { type: 'webhook', auth: { type: 'asana' } }, steps: [] })).status).toBe(200);
    const next = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    expect((await handshake('asana', next)).headers.get('x-hook-secret')).toBe(next);
    expect((await event('asana', body, next)).status).toBe(200);
    expect((await event('asana', body, secret)).status).toBe(403);
  });

  it('a secret given in the definition is used as it is (an existing webhook moved to hookd)', async () => {
    const secret = 'existing-asana-secret-0123456789';
    expect((await h.api('PUT', '/api/flows/asana-given', { trigger: { type: 'webhook', auth: { type: 'asana', secrets: [secret] } }, steps: [] })).status).toBe(201);
    const body = '{"events":[]}';
    expect((await event('asana-given', body, secret)).status).toBe(200);
    expect((await handshake('asana-given', 'e'.repeat(32))).status).toBe(403);
  });

  it('takes a handshake only within the window after the flow was saved; other credentials ignore X-Hook-Secret', () => {
    const flow = normalizeFlow({ trigger: { type: 'webhook', auth: { type: 'asana' } } }, 'f', new Date(1_000_000));
    const req = { headersDistinct: { 'x-hook-secret': ['0123456789abcdef'] } };
    expect(asanaHandshake(flow, 'POST', req, 1_000_000 + ASANA_HANDSHAKE_WINDOW_MS)).toEqual({ secret: '0123456789abcdef' });
    expect(asanaHandshake(flow, 'POST', req, 1_000_001 + ASANA_HANDSHAKE_WINDOW_MS)).toBe('closed');
    expect(asanaHandshake(flow, 'GET', req, 1_000_000)).toBeUndefined();
    const hmac = normalizeFlow({ trigger: { type: 'webhook', auth: { type: 'hmac', header: 'X-Sig', secrets: ['s0123456789'] } } }, 'g', new Date(1_000_000));
    expect(asanaHandshake(hmac, 'POST', req, 1_000_000)).toBeUndefined();
  });
});

describe('asana, two instances on one database', () => {
  const { backends, cleanUp } = everyBackend('asana');
  const env = backends.find(([name]) => name === 'PostgreSQL')![1];
  const instances: RunningHookd[] = [];
  afterAll(async () => {
    await Promise.all(instances.map((i) => i.close()));
    await cleanUp([]);
  });

  it('an event to the instance that did not take the handshake verifies at once, without waiting for its flow refresh', async () => {
    // A refresh that would come only after the test: the instance must read the flow itself.
    for (let i = 0; i < 2; i++) instances.push(await startHookd({ WORKER_CONCURRENCY: '0', FLOW_REFRESH: '1h', ...env }));
    const [a, b] = instances as [RunningHookd, RunningHookd];
    expect((await a.api('PUT', '/api/flows/asana-2', { trigger: { type: 'webhook', auth: { type: 'asana' } }, steps: [] })).status).toBe(201);
    // b learns of the flow (as it would at a refresh), still without a secret.
    await b.app.registry.load();
    expect(b.app.registry.get('asana-2')?.trigger.auth).toEqual({ type: 'asana' });
    const secret = '9f8e7d6c5b4a39281706f5e4d3c2b1a0';
    const res = await fetch(`${a.url}/hook/asana-2`, { method: 'POST', headers: { 'x-hook-secret': secret } });
    expect(res.status).toBe(200);
    const body = '{"events":[{"action":"added"}]}';
    const signed = await fetch(`${b.url}/hook/asana-2`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-hook-signature': createHmac('sha256', secret).update(body).digest('hex') },
      body,
    });
    expect(signed.status).toBe(200);
    // Learned there now; a wrong signature is still refused.
    const wrong = await fetch(`${b.url}/hook/asana-2`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hook-signature': 'ab'.repeat(32) }, body });
    expect(wrong.status).toBe(403);
  });
});
