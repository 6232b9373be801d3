import { getEventListeners } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { HttpStepDef } from '../../src/core/flow.js';
import type { RequestPayload, StepContext } from '../../src/flow/step.js';
import { StepFailure } from '../../src/flow/step-failure.js';
import { compileHttpStep, parseRetryAfter } from '../../src/flow/steps/http.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

let server: Server;
let base: string;
const seen: Seen[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const path = (req.url ?? '').split('?')[0];
      switch (path) {
        case '/echo':
          res.writeHead(201, { 'content-type': 'application/json', 'x-receiver': 'yes' });
          res.end(JSON.stringify({ got: body === '' ? null : body, method: req.method }));
          return;
        case '/text':
          res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
          res.end('plain answer');
          return;
        case '/empty':
          res.writeHead(204);
          res.end();
          return;
        case '/binary':
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          res.end(Buffer.from([0, 1, 2, 255]));
          return;
        case '/big':
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('z'.repeat(5000));
          return;
        case '/big-json':
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ pad: 'z'.repeat(5000) }));
          return;
        case '/latin1':
          res.writeHead(200, { 'content-type': 'text/plain; charset=iso-8859-1' });
          res.end(Buffer.from([0x63, 0x61, 0x66, 0xe9])); // "café"
          return;
        case '/moved':
          res.writeHead(302, { location: '/echo?token=abc' });
          res.end();
          return;
        case '/slow':
          setTimeout(() => {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end('{}');
          }, 500);
          return;
        case '/fail':
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end('database on fire');
          return;
        case '/busy':
          res.writeHead(503, { 'retry-after': '7' });
          res.end();
          return;
        case '/toomany':
          res.writeHead(429, { 'retry-after': '2' });
          res.end();
          return;
        case '/notfound':
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end('{"error":"nope"}');
          return;
        default:
          res.writeHead(500);
          res.end('unknown path');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  seen.length = 0;
});

const ctx = (stepId: string, signal?: AbortSignal): StepContext => ({
  flowId: 'f1',
  requestId: 'req-42',
  stepId,
  attempt: 1,
  logger: pino({ level: 'silent' }),
  ...(signal ? { signal } : {}),
});

function step(def: Partial<HttpStepDef> & { url: string }, maxResponseBytes?: number) {
  return compileHttpStep({ id: 'call', type: 'http', ...def } as HttpStepDef, maxResponseBytes ? { maxResponseBytes } : {});
}

async function failure(p: Promise<unknown>): Promise<StepFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StepFailure);
  return err as StepFailure;
}

describe('http step', () => {
  it('POSTs the input as JSON with the idempotency key and returns status, headers and parsed body', async () => {
    const s = step({ url: `${base}/echo?token=secret` });
    expect(s.pure).toBe(false);
    const out = await s.run({ hello: 'world' }, ctx('call'));
    expect(seen).toHaveLength(1);
    expect(seen[0]!.method).toBe('POST');
    expect(seen[0]!.url).toBe('/echo?token=secret');
    expect(seen[0]!.headers['idempotency-key']).toBe('req-42:call');
    expect(seen[0]!.headers['content-type']).toBe('application/json');
    expect(seen[0]!.headers['user-agent']).toBe('hookd');
    expect(JSON.parse(seen[0]!.body)).toEqual({ hello: 'world' });
    expect(out).toMatchObject({
      status: 'completed',
      output: { status: 201, headers: { 'x-receiver': 'yes' }, body: { got: '{"hello":"world"}', method: 'POST' } },
    });
  });

  it('uses the method, the static headers and the JSONata body expression', async () => {
    const s = step({
      url: `${base}/echo`,
      method: 'PUT',
      headers: { 'X-Api-Key': 'k1', Authorization: 'Bearer t' },
      body: '{ "id": body.order.id, "skus": body.order.items.sku }',
    });
    await s.run({ body: { order: { id: 9, items: [{ sku: 'a' }, { sku: 'b' }] } } }, ctx('call'));
    expect(seen[0]!.method).toBe('PUT');
    expect(seen[0]!.headers['x-api-key']).toBe('k1');
    expect(seen[0]!.headers.authorization).toBe('Bearer t');
    expect(seen[0]!.headers['idempotency-key']).toBe('req-42:call');
    expect(JSON.parse(seen[0]!.body)).toEqual({ id: 9, skus: ['a', 'b'] });
  });

  it('sends a string result as text unless the headers name a content type', async () => {
    await step({ url: `${base}/echo`, body: '"<a>" & body & "</a>"', headers: { 'content-type': 'application/xml' } }).run(
      { body: 'x' },
      ctx('call'),
    );
    expect(seen[0]!.headers['content-type']).toBe('application/xml');
    expect(seen[0]!.body).toBe('<a>x</a>');
    await step({ url: `${base}/echo` }).run('just text', ctx('call'));
    expect(seen[1]!.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(seen[1]!.body).toBe('just text');
  });

  it('sends no body with GET', async () => {
    const out = await step({ url: `${base}/echo`, method: 'GET' }).run({ a: 1 }, ctx('call'));
    expect(seen[0]!.method).toBe('GET');
    expect(seen[0]!.body).toBe('');
    expect(seen[0]!.headers['content-type']).toBeUndefined();
    expect(out).toMatchObject({ output: { status: 201, body: { got: null, method: 'GET' } } });
  });

  it('decodes text, empty and binary responses', async () => {
    await expect(step({ url: `${base}/text` }).run({}, ctx('call'))).resolves.toMatchObject({ output: { status: 200, body: 'plain answer' } });
    await expect(step({ url: `${base}/empty` }).run({}, ctx('call'))).resolves.toMatchObject({ output: { status: 204, body: null } });
    await expect(step({ url: `${base}/binary` }).run({}, ctx('call'))).resolves.toMatchObject({
      output: { status: 200, body: Buffer.from([0, 1, 2, 255]).toString('base64'), bodyEncoding: 'base64' },
    });
  });

  it('fails retryably on non-2xx, with the status and a snippet of the answer (no query string)', async () => {
    const err = await failure(step({ url: `${base}/fail?token=secret` }).run({}, ctx('call')));
    expect(err.retryable).toBe(true);
    expect(err.message).toBe(`POST ${base}/fail answered 500 Internal Server Error: database on fire`);
    expect(err.message).not.toContain('secret');
    const notFound = await failure(step({ url: `${base}/notfound` }).run({}, ctx('call')));
    expect(notFound.retryable).toBe(true);
    expect(notFound.message).toContain('404');
  });

  it('retryClientErrors false: a 4xx no retry changes fails at once; 5xx and 429 are still retried', async () => {
    const strict = (path: string) => step({ url: `${base}${path}`, retryClientErrors: false });
    const notFound = await failure(strict('/notfound').run({}, ctx('call')));
    expect(notFound.retryable).toBe(false);
    expect(notFound.message).toContain('404');
    expect(notFound.message).toContain('not retried, retryClientErrors is false');
    expect((await failure(strict('/fail').run({}, ctx('call')))).retryable).toBe(true); // 500
    const busy = await failure(strict('/toomany').run({}, ctx('call')));
    expect(busy.retryable).toBe(true);
    expect(busy.message).toContain('429');
    expect(busy.retryAfterMs).toBe(2_000);
  });

  it('a failed call keeps what it sent (the body expression\'s result) and what came back, for the step\'s record', async () => {
    // A receiver answering 404 {"error":"nope"} to a templated body: the author needs the body that was sent.
    const err = await failure(step({ url: `${base}/notfound?token=secret`, method: 'PUT', body: '{"lead": body.email}' }).run({ body: { email: 'a@x.test' } }, ctx('call')));
    expect(err.output).toEqual({
      request: { method: 'PUT', url: `${base}/notfound`, body: { lead: 'a@x.test' } },
      status: 404,
      headers: expect.objectContaining({ 'content-type': 'application/json' }),
      body: '{"error":"nope"}',
    });
    // Nobody answered: what was sent, alone.
    const refused = await failure(step({ url: 'http://127.0.0.1:1024/x', body: '"plain"' }).run({}, ctx('call')));
    expect(refused.output).toEqual({ request: { method: 'POST', url: 'http://127.0.0.1:1024/x', body: 'plain' } });
  });

  it('honours Retry-After on 503', async () => {
    const err = await failure(step({ url: `${base}/busy` }).run({}, ctx('call')));
    expect(err.retryable).toBe(true);
    expect(err.retryAfterMs).toBe(7000);
    expect(parseRetryAfter(new Date(Date.now() + 60_000).toUTCString())).toBeGreaterThan(58_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });

  it('times out', async () => {
    const t0 = performance.now();
    const err = await failure(step({ url: `${base}/slow`, timeoutMs: 100 }).run({}, ctx('call')));
    expect(performance.now() - t0).toBeLessThan(450);
    expect(err.retryable).toBe(true);
    expect(err.message).toBe(`POST ${base}/slow timed out after 100 ms`);
  });

  it('is aborted by the runner signal', async () => {
    const controller = new AbortController();
    const p = step({ url: `${base}/slow` }).run({}, ctx('call', controller.signal));
    setTimeout(() => controller.abort(), 50);
    const err = await failure(p);
    expect(err.message).toMatch(/aborted: runner stopping/);
  });

  it("leaves nothing on the runner's signal once a call is done (success, failure, timeout)", async () => {
    const controller = new AbortController();
    const listeners = () => getEventListeners(controller.signal, 'abort').length;
    await step({ url: `${base}/echo` }).run({}, ctx('call', controller.signal));
    await failure(step({ url: `${base}/slow`, timeoutMs: 50 }).run({}, ctx('call', controller.signal)));
    await failure(step({ url: `${base}/moved` }).run({}, ctx('call', controller.signal)));
    expect(listeners()).toBe(0);
    // A call under way listens; the runner's stop still aborts it.
    const p = step({ url: `${base}/slow` }).run({}, ctx('call', controller.signal));
    await new Promise((r) => setTimeout(r, 20));
    expect(listeners()).toBe(1);
    controller.abort();
    expect((await failure(p)).message).toMatch(/aborted: runner stopping/);
    expect(listeners()).toBe(0);
  });

  it('fails retryably when nobody listens', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const err = await failure(step({ url: `http://127.0.0.1:${port}/x` }).run({}, ctx('call')));
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/failed: ECONNREFUSED/);
  });

  it('fails non-retryably when the body expression fails', async () => {
    const bad = await failure(step({ url: `${base}/echo`, body: 'body.a + 1' }).run({ body: { a: 'x' } }, ctx('call')));
    expect(bad.retryable).toBe(false);
    expect(seen).toHaveLength(0); // nothing was sent
  });

  it('a body expression that matches nothing fails without retry instead of sending an empty POST', async () => {
    // `body: body` after a transform whose output has no `body` field: an empty POST was sent, and the step completed.
    const none = await failure(step({ url: `${base}/echo`, body: 'body' }).run({ name: 'Ana' }, ctx('call')));
    expect(none.retryable).toBe(false);
    expect(none.message).toBe('the body expression `body` matched nothing in its input (JSONata\'s no match): nothing to send; the input is in this step\'s record');
    for (const method of ['PUT', 'PATCH'] as const) await failure(step({ url: `${base}/echo`, method, body: 'body.missing' }).run({ body: {} }, ctx('call')));
    expect(seen).toHaveLength(0);
    // A DELETE may go without a body; null is a value (sent as JSON).
    await step({ url: `${base}/echo`, method: 'DELETE', body: 'body.missing' }).run({ body: {} }, ctx('call'));
    await step({ url: `${base}/echo`, body: 'null' }).run({}, ctx('call'));
    expect(seen.map((c) => [c.method, c.body])).toEqual([['DELETE', ''], ['POST', 'null']]);
  });

  it('a 2xx answer longer than kept is a success with its beginning, marked truncated (the receiver took the call)', async () => {
    const big = await step({ url: `${base}/big` }, 1000).run({}, ctx('call'));
    expect(big.status).toBe('completed');
    const out = (big as { output: { body: string; bodyTruncated?: boolean } }).output;
    expect(out.body).toBe('z'.repeat(1000));
    expect(out.bodyTruncated).toBe(true);
    const json = (await step({ url: `${base}/big-json` }, 1000).run({}, ctx('call'))) as { output: { body: unknown; bodyTruncated?: boolean } };
    expect(json.output).toMatchObject({ body: expect.stringMatching(/^\{"pad":"z+$/), bodyTruncated: true });
    const whole = (await step({ url: `${base}/text` }).run({}, ctx('call'))) as { output: { bodyTruncated?: boolean } };
    expect(whole.output.bodyTruncated).toBeUndefined();
  });

  it('decodes text by the charset the answer declares', async () => {
    const out = (await step({ url: `${base}/latin1` }).run({}, ctx('call'))) as { output: { body: unknown } };
    expect(out.output.body).toBe('café');
  });

  it('does not follow redirects: a 3xx is a failed delivery that names where it pointed (no query)', async () => {
    const err = await failure(step({ url: `${base}/moved` }).run({ a: 1 }, ctx('call')));
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/answered 302 Found \(a redirect to http:\/\/127\.0\.0\.1:\d+\/echo: redirects are not followed/);
    expect(err.message).not.toMatch(/token=abc/);
    expect(seen.map((s) => s.url)).toEqual(['/moved']); // the target was never called
  });

  it('forwardAttachment: inline raw bytes with their type; no GET; a missing field or store fails without retry', async () => {
    expect(() => step({ url: `${base}/echo`, method: 'GET', forwardAttachment: 'raw' })).toThrow(/cannot forward an attachment/);
    const payload: RequestPayload = {
      contentType: 'text/csv',
      rawBody: Buffer.from('a,b\n1,2\n'),
      attachments: [{ id: 'x', field: 'doc', contentType: 'application/pdf', size: 3, sha256: '0'.repeat(64) }],
      open: async () => undefined,
    };
    await step({ url: `${base}/echo`, forwardAttachment: 'raw' }).run({}, { ...ctx('call'), payload });
    expect(seen[0]!.headers['content-type']).toBe('text/csv');
    expect(seen[0]!.headers['content-length']).toBe('8');
    expect(seen[0]!.body).toBe('a,b\n1,2\n');
    const noField = await failure(step({ url: `${base}/echo`, forwardAttachment: { field: 'nope' } }).run({}, { ...ctx('call'), payload }));
    expect(noField.retryable).toBe(false);
    expect(noField.message).toMatch(/no file in field "nope"/);
    const gone = await failure(step({ url: `${base}/echo`, forwardAttachment: { field: 'doc' } }).run({}, { ...ctx('call'), payload }));
    expect(gone.retryable).toBe(false);
    expect(gone.message).toMatch(/attachment x is gone/);
    const noStore = await failure(step({ url: `${base}/echo`, forwardAttachment: 'raw' }).run({}, ctx('call')));
    expect(noStore.retryable).toBe(false);
    const notObject = await failure(step({ url: `${base}/echo`, forwardAttachment: 'multipart', body: '"text"' }).run({}, { ...ctx('call'), payload }));
    expect(notObject.message).toMatch(/must give an object/);
  });
});
