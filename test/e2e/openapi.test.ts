import { readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DocumentedResponses } from '../helpers/documented-responses.js';
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
  expect(doc.paths['/api/executions']!.get!.parameters?.map((p) => `${p.in}:${p.name}`)).toEqual(['query:flowId', 'query:requestId', 'query:status', 'query:since', 'query:until', 'query:limit', 'query:before']);
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

it('every answer the tests get is checked against the document: a body or status it does not describe fails', async () => {
  const doc = (await h.api('GET', '/api/openapi.json')).body as { components: { schemas: Record<string, unknown> }; paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>> };
  // Each answer type is one component, referenced from its operations.
  expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(['Error', 'Flow', 'FlowList', 'Execution', 'ExecutionList', 'Request', 'RequestList', 'QueueStats', 'DeadLetterList', 'BulkRetryResult', 'ReplayAccepted', 'BulkReplayResult']));
  expect(doc.paths['/api/flows/{id}']!.get!.responses['200']!.content!['application/json']!.schema).toEqual({ $ref: '#/components/schemas/Flow' });
  expect(doc.paths['/api/executions']!.get!.responses['200']!.content!['application/json']!.schema).toEqual({ $ref: '#/components/schemas/ExecutionList' });

  const checker = new DocumentedResponses(doc as never);
  const created = await h.api('POST', '/api/flows', { id: 'documented', trigger: { type: 'webhook', auth: { type: 'hmac', header: 'X-Signature', secrets: ['a-secret-of-enough-length'] } } });
  expect(created.status).toBe(201);
  const flow = (await h.api('GET', '/api/flows/documented')).body as Record<string, unknown>;
  expect(() => checker.check('GET', '/api/flows/documented', 200, flow, 'application/json')).not.toThrow();
  // What a view that drifted from its schema would answer.
  expect(() => checker.check('GET', '/api/flows/documented', 200, { ...flow, extra: 1 }, 'application/json')).toThrow(/does not match its documented schema.*extra/);
  expect(() => checker.check('GET', '/api/flows/documented', 200, { ...flow, status: 'paused' }, 'application/json')).toThrow(/\/status/);
  expect(() => checker.check('GET', '/api/flows/documented', 200, { ...flow, createdAt: 'yesterday' }, 'application/json')).toThrow(/\/createdAt/);
  expect(() => checker.check('GET', '/api/queue', 200, { ready: 1 }, 'application/json')).toThrow(/inFlight/);
  // A status the operation does not list; an error not in the error shape.
  expect(() => checker.check('GET', '/api/flows/documented', 418, { error: 'TEAPOT', message: 'x' }, 'application/json')).toThrow(/status not documented/);
  expect(() => checker.check('GET', '/api/flows/missing', 404, { message: 'x' }, 'application/json')).toThrow(/error/);
  expect(() => checker.check('GET', '/api/nothing-here', 200, {}, 'application/json')).toThrow(/not in the OpenAPI document/);
  // A route of that path that takes the method: GET /api/requests/replay is a request named `replay`.
  expect(() => checker.check('GET', '/api/requests/replay', 404, { error: 'NOT_FOUND', message: 'Request replay' }, 'application/json')).not.toThrow();
  // The API takes no HEAD: fastify's 404, without a body.
  expect(() => checker.check('HEAD', '/api/flows', 404, undefined, null)).not.toThrow();
  // fastify's limit on path parameters.
  expect(() => checker.check('GET', `/api/flows/${'a'.repeat(300)}`, 414, { error: 'URI_TOO_LONG', message: 'x' }, 'application/json')).not.toThrow();
  expect((await h.api('GET', `/api/flows/${'a'.repeat(300)}`)).status).toBe(414);
  // The literal route wins over the parameter: /api/requests/replay is not /api/requests/{id}.
  expect(() => checker.check('POST', '/api/requests/replay', 202, { requestId: 'a', replayOf: 'b', flowId: 'c', status: 'started' }, 'application/json')).toThrow(/does not match/);
});
