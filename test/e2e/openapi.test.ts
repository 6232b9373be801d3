import { readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type RunningHookd, startHookd } from '../helpers/hookd.js';

let h: RunningHookd;
beforeAll(async () => {
  h = await startHookd({ WORKER_CONCURRENCY: '0', HOOKD_READ_TOKENS: 'openapi-reader-0123456789' });
});
afterAll(() => h.close());

interface Operation {
  summary: string;
  parameters?: Array<{ name: string; in: string; required: boolean }>;
  requestBody?: { required: boolean; content: { 'application/json': { schema: { properties?: Record<string, unknown>; required?: string[] } } } };
  responses: Record<string, { description: string }>;
}

it('GET /api/openapi.json describes every route of the API, built from the routes as registered', async () => {
  const res = await h.api('GET', '/api/openapi.json');
  expect(res.status).toBe(200);
  const doc = res.body as { openapi: string; info: { version: string }; paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, unknown> } };
  expect(doc.openapi).toBe('3.1.0');
  // A valid OpenAPI 3.1 document, as its JSON schema says.
  expect(await new Validator().validate(doc as never)).toEqual({ valid: true });
  expect(doc.info.version).toBe((JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version);

  // Every operation under /api says what it does and what it answers.
  const api = Object.entries(doc.paths).filter(([p]) => p.startsWith('/api/'));
  const operations = api.flatMap(([p, methods]) => Object.entries(methods).map(([m, op]) => ({ key: `${m.toUpperCase()} ${p}`, op })));
  expect(operations.length).toBeGreaterThanOrEqual(23);
  for (const { key, op } of operations) {
    expect(op.summary, key).not.toBe('');
    expect(Object.keys(op.responses).some((s) => s.startsWith('2')), key).toBe(true);
  }
  const keys = operations.map((o) => o.key);
  for (const expected of ['GET /api/flows', 'PUT /api/flows/{id}', 'POST /api/flows/{id}/start', 'POST /api/flows/{id}/stop', 'GET /api/executions', 'POST /api/requests/replay',
    'POST /api/requests/{id}/replay', 'GET /api/requests/{id}/attachments/{attId}', 'POST /api/dead-letters/retry', 'DELETE /api/flows/{id}/secrets/{index}', 'GET /api/openapi.json']) {
    expect(keys, expected).toContain(expected);
  }
  // Each route exists as documented: a documented path answers something else than "no such route".
  for (const { key } of operations.filter((o) => o.key.startsWith('GET ') && !o.key.includes('{'))) {
    const r = await h.api('GET', key.slice(4));
    expect(r.status, key).not.toBe(404);
  }

  // The schemas are the ones that check: bodies, queries, path parameters.
  const bulk = doc.paths['/api/requests/replay']!.post!;
  expect(bulk.requestBody?.required).toBe(true);
  expect(bulk.requestBody?.content['application/json'].schema.required).toEqual(['flowId']);
  expect(Object.keys(bulk.requestBody?.content['application/json'].schema.properties ?? {})).toEqual(['flowId', 'since', 'until', 'into', 'limit', 'after', 'includeReplays']);
  expect(doc.paths['/api/dead-letters/retry']!.post!.requestBody?.required).toBe(false);
  expect(doc.paths['/api/executions']!.get!.parameters?.map((p) => `${p.in}:${p.name}`)).toEqual(['query:flowId', 'query:status', 'query:limit', 'query:before']);
  expect(doc.paths['/api/flows/{id}']!.get!.parameters).toEqual([{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }]);
  expect(doc.paths['/api/flows/{id}']!.put!.requestBody?.content['application/json'].schema).toMatchObject({ type: 'object', properties: { steps: expect.any(Object), trigger: expect.any(Object) } });
  // The webhook and operations routes, which need no token.
  expect(Object.keys(doc.paths['/hook/{flowId}']!)).toEqual(['head', 'get', 'post', 'put', 'patch', 'options']);
  // What every change can also answer: a read token's 403, a body's 413/415, an outage's 503.
  expect(Object.keys(doc.paths['/api/requests/replay']!.post!.responses)).toEqual(expect.arrayContaining(['202', '400', '401', '403', '409', '413', '415', '503']));
  expect(Object.keys(doc.paths['/api/flows']!.get!.responses)).not.toContain('403');
  expect(doc.paths['/readyz']).toBeDefined();

  // A read token may read it too.
  const reader = await fetch(`${h.url}/api/openapi.json`, { headers: { authorization: 'Bearer openapi-reader-0123456789' } });
  expect(reader.status).toBe(200);
});
