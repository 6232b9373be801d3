import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { adminCall, type RunningHookd, spawnHookd, startHookd, tempDir, waitFor } from '../helpers/hookd.js';

let h: RunningHookd;

beforeAll(async () => {
  h = await startHookd({ PAYLOAD_SIZE_LIMIT: '1mb', WORKER_CONCURRENCY: '0' });
  expect((await h.api('POST', '/api/flows', { id: 'orders' })).status).toBe(201);
  expect((await h.api('POST', '/api/flows', { id: 'other' })).status).toBe(201);
  expect((await h.api('POST', '/api/flows', { id: 'paused', status: 'stopped' })).status).toBe(201);
  expect(
    (await h.api('POST', '/api/flows', { id: 'custom', trigger: { type: 'webhook', response: { status: 202, headers: { 'x-hello': 'world' }, body: { ok: true } } } })).status,
  ).toBe(201);
});
afterAll(() => h.close());

const stored = async (id: string) => (await h.api('GET', `/api/requests/${id}`)).body;

/** Raw HTTP so headers, framing and timing are exactly what the test says. */
function raw(
  options: http.RequestOptions & { body?: Buffer | string },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const u = new URL(h.url);
  return new Promise((resolve, reject) => {
    // A connection of its own: a request that announces a body it never sends must not leave its
    // socket to the next one (the server is still reading that body).
    const req = http.request({ host: u.hostname, port: u.port, agent: false, ...options }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('HEAD /hook/:flowId', () => {
  it('is 200 and empty for a started flow, 404 for unknown or stopped, and stores nothing', async () => {
    const ok = await fetch(`${h.url}/hook/orders`, { method: 'HEAD' });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('');
    expect((await fetch(`${h.url}/hook/nope`, { method: 'HEAD' })).status).toBe(404);
    expect((await fetch(`${h.url}/hook/paused`, { method: 'HEAD' })).status).toBe(404);
    const list = await h.api('GET', '/api/requests?flowId=orders');
    expect(list.body.items.filter((m: any) => m.method === 'HEAD')).toEqual([]);
  });
});

describe('GET /hook/:flowId', () => {
  it('makes a message from query and headers, with a path suffix', async () => {
    const res = await fetch(`${h.url}/hook/orders/eu/retail?a=1&b=x&b=y`, { headers: { 'x-custom': 'yes' } });
    expect(res.status).toBe(200);
    const { requestId, message } = (await res.json()) as any;
    expect(message).toBe('thank you');
    const m = await stored(requestId);
    expect(m).toMatchObject({ flowId: 'orders', method: 'GET', path: '/eu/retail', query: { a: '1', b: ['x', 'y'] }, body: null, size: 0 });
    expect(m.headers['x-custom']).toBe('yes');
    expect(m.clientIp).toBe('127.0.0.1');
  });
});

describe('POST, PUT, PATCH /hook/:flowId', () => {
  it('stores the parsed body, the exact raw bytes, query, headers without hop-by-hop ones', async () => {
    const body = '{ "b": 2,\r\n  "a": "ü€" }';
    const res = await raw({
      method: 'POST',
      path: '/hook/orders?x=1',
      headers: { 'content-type': 'application/json', connection: 'keep-alive, x-hop', 'x-hop': 'drop me', 'keep-alive': 'timeout=5', 'x-keep': 'kept' },
      body,
    });
    expect(res.status).toBe(200);
    const { requestId } = JSON.parse(res.body);
    expect(res.headers['x-request-id']).toBe(requestId);
    const m = await stored(requestId);
    expect(m.body).toEqual({ b: 2, a: 'ü€' });
    expect(Buffer.from(m.rawBody, 'base64').toString('utf8')).toBe(body);
    expect(m.query).toEqual({ x: '1' });
    expect(m.headers['x-keep']).toBe('kept');
    for (const hop of ['connection', 'keep-alive', 'x-hop', 'transfer-encoding']) expect(m.headers[hop]).toBeUndefined();
    expect(Date.parse(m.receivedAt)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('stores headers as documented: names in lower case, hop-by-hop ones dropped (Proxy-* too), repeated ones joined, other bytes kept', async () => {
    const head = [
      'POST /hook/orders HTTP/1.1',
      'Host: x',
      'Content-Type: application/json',
      'Content-Length: 2',
      'Connection: keep-alive, X-Private',
      'X-Private: hop',
      'Keep-Alive: timeout=5',
      'TE: trailers',
      'Trailer: X-Checksum',
      'Upgrade: h2c',
      'Proxy-Authorization: Basic cHJveHk6c2VjcmV0',
      'Proxy-Connection: keep-alive',
      'Proxy-Foo: set by a proxy, for the proxy',
      'X-MiXeD-Case: V',
      'X-Foo: a',
      'X-Foo: b',
      'Cookie: a=1',
      'Cookie: b=2',
      'Set-Cookie: s=1',
      'Set-Cookie: s=2',
    ].join('\r\n');
    const latin = Buffer.from('X-Text: caf\u00e9 \u2713', 'utf8'); // UTF-8 bytes: kept one char per byte
    const answers = await exchange(Buffer.concat([Buffer.from(`${head}\r\n`), latin, Buffer.from('\r\n\r\n{}')]));
    expect(statusesOf(answers)).toEqual([200]);
    const m = await stored(/"requestId":"([^"]+)"/.exec(answers)![1]!);
    expect(m.headers).toEqual({
      host: 'x',
      'content-type': 'application/json',
      'content-length': '2',
      'x-mixed-case': 'V',
      'x-foo': 'a, b',
      cookie: 'a=1; b=2',
      'set-cookie': ['s=1', 's=2'],
      'x-text': Buffer.from('café ✓', 'utf8').toString('latin1'),
    });
  });

  it.each(['PUT', 'PATCH'])('%s delivers a message like POST', async (method) => {
    const res = await fetch(`${h.url}/hook/orders`, { method, headers: { 'content-type': 'application/json' }, body: '[1,2]' });
    expect(res.status).toBe(200);
    const m = await stored(((await res.json()) as any).requestId);
    expect(m).toMatchObject({ method, body: [1, 2] });
  });

  it('parses */*+json as JSON and text/plain as a string (declared charset honoured)', async () => {
    const a = await fetch(`${h.url}/hook/orders`, { method: 'POST', headers: { 'content-type': 'application/vnd.api+json' }, body: '{"data":{}}' });
    expect((await stored(((await a.json()) as any).requestId)).body).toEqual({ data: {} });
    const b = await fetch(`${h.url}/hook/orders`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello\nworld' });
    expect((await stored(((await b.json()) as any).requestId)).body).toBe('hello\nworld');
    const c = await raw({ method: 'POST', path: '/hook/orders', headers: { 'content-type': 'text/plain; charset=iso-8859-1' }, body: Buffer.from([0x63, 0x61, 0x66, 0xe9]) });
    expect((await stored(JSON.parse(c.body).requestId)).body).toBe('café');
  });

  it('keeps a body of an unknown type as an attachment holding the exact bytes (never an error)', async () => {
    const bytes = Buffer.from([0, 1, 2, 255, 254]);
    const res = await raw({ method: 'POST', path: '/hook/orders', headers: { 'content-type': 'application/octet-stream' }, body: bytes });
    expect(res.status).toBe(200);
    const id = JSON.parse(res.body).requestId;
    const m = await stored(id);
    expect(m.body).toBeNull();
    expect(m.rawBody).toBe('');
    expect(m.size).toBe(bytes.length);
    expect(m.attachments).toHaveLength(1);
    expect(m.rawAttachment).toEqual(m.attachments[0]);
    expect(m.rawAttachment).toMatchObject({ contentType: 'application/octet-stream', size: bytes.length });
    const download = await fetch(`${h.url}/api/requests/${id}/raw`, { headers: { authorization: `Bearer ${h.token}` } });
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer())).toEqual(bytes);
  });
});

describe('errors', () => {
  it('404 for unknown and stopped flows: identical body and headers', async () => {
    const a = await raw({ method: 'POST', path: '/hook/nope', headers: { 'content-type': 'application/json' }, body: '{}' });
    const b = await raw({ method: 'POST', path: '/hook/paused', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(a.status).toBe(404);
    expect(b.status).toBe(404);
    expect(JSON.parse(a.body)).toEqual({ error: 'Flow nope either does not exist or is inactive.' });
    expect(JSON.parse(b.body)).toEqual({ error: 'Flow paused either does not exist or is inactive.' });
    // Same length when the ids have the same length: nothing else differs.
    const c = await raw({ method: 'POST', path: '/hook/pausex', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(c.body.length).toBe(b.body.length);
    const strip = (hd: http.IncomingHttpHeaders) => Object.keys(hd).filter((k) => k !== 'date').sort();
    expect(strip(a.headers)).toEqual(strip(b.headers));
  });

  it('404 for unknown and stopped flows whatever the Content-Type, malformed ones included; 415 for a started flow', async () => {
    for (const type of ['json', 'application/json, text/plain', '']) {
      for (const id of ['nope', 'paused']) {
        const res = await raw({ method: 'POST', path: `/hook/${id}`, headers: { 'content-type': type }, body: '{}' });
        expect(res.status, `${id} with "${type}"`).toBe(404);
        expect(JSON.parse(res.body)).toEqual({ error: `Flow ${id} either does not exist or is inactive.` });
      }
      const started = await raw({ method: 'POST', path: '/hook/orders', headers: { 'content-type': type }, body: '{}' });
      expect(started.status, `orders with "${type}"`).toBe(415);
    }
  });

  it('404 timing does not tell an unknown flow from a stopped one', async () => {
    const time = async (id: string) => {
      const t = performance.now();
      await raw({ method: 'GET', path: `/hook/${id}` });
      return performance.now() - t;
    };
    const unknown: number[] = [];
    const stopped: number[] = [];
    for (let i = 0; i < 300; i++) {
      // Interleaved, so machine noise hits both alike.
      unknown.push(await time('pausex'));
      stopped.push(await time('paused'));
    }
    const median = (xs: number[]) => xs.sort((x, y) => x - y)[xs.length >> 1]!;
    const mu = median(unknown);
    const ms = median(stopped);
    expect(Math.abs(mu - ms)).toBeLessThan(Math.max(0.25, 0.2 * Math.min(mu, ms)));
  });

  it('415 for a body without Content-Type; a bodiless POST is fine', async () => {
    const res = await raw({ method: 'POST', path: '/hook/orders', headers: { 'content-length': '7' }, body: 'abcdefg' });
    expect(res.status).toBe(415);
    expect(JSON.parse(res.body).error).toBe('UNSUPPORTED_MEDIA_TYPE');
    const ping = await raw({ method: 'POST', path: '/hook/orders' });
    expect(ping.status).toBe(200);
  });

  it('415 naming it for a Content-Type that is not a media type', async () => {
    for (const type of ['foo', '']) {
      const res = await raw({ method: 'POST', path: '/hook/orders', headers: { 'content-type': type, 'content-length': '2' }, body: '{}' });
      expect(res.status).toBe(415);
      const body = JSON.parse(res.body);
      expect(body.error).toBe('UNSUPPORTED_MEDIA_TYPE');
      expect(body.message).toBe(`Content-Type ${JSON.stringify(type)} is not a media type (type/subtype, e.g. application/json)`);
    }
  });

  it('400 with the reason for invalid JSON; no bytes at all is no body, whatever the declared type', async () => {
    const res = await fetch(`${h.url}/hook/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":' });
    expect(res.status).toBe(400);
    const body = (await res.json()) as any;
    expect(body.error).toBe('INVALID_BODY');
    expect(body.message).toMatch(/^Invalid JSON body: .*(JSON|end)/i);
    // A ping that declares JSON and sends nothing is stored as a bodiless call, not refused.
    for (const type of ['application/json', 'application/xml', 'multipart/form-data; boundary=x']) {
      const empty = await raw({ method: 'POST', path: '/hook/orders', headers: { 'content-type': type, 'content-length': '0' } });
      expect(empty.status, type).toBe(200);
      const m = await stored(JSON.parse(empty.body).requestId);
      expect(m).toMatchObject({ body: null, rawBody: '', contentType: type });
    }
    // The same by other framings: chunked with no chunk (node's http.request for write('')), with
    // or without a type, and a Content-Length of 00.
    for (const headers of [
      { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      { 'transfer-encoding': 'chunked' },
      { 'content-type': 'application/json', 'content-length': '00' },
    ] as Record<string, string>[]) {
      const empty = await raw({ method: 'POST', path: '/hook/orders', headers });
      expect(empty.status, JSON.stringify(headers)).toBe(200);
      expect(await stored(JSON.parse(empty.body).requestId)).toMatchObject({ body: null, rawBody: '' });
    }
    // Chunked bytes without a type are still refused.
    const typeless = await raw({ method: 'POST', path: '/hook/orders', headers: { 'transfer-encoding': 'chunked' }, body: 'abc' });
    expect(typeless.status).toBe(415);
  });

  it('JSON must be UTF-8 and its numbers within a double: 400 naming the problem, nothing stored', async () => {
    const post = (body: Buffer | string, type = 'application/json') => raw({ method: 'POST', path: '/hook/orders', headers: { 'content-type': type }, body });
    for (const [body, reason] of [
      [Buffer.from([0x7b, 0x22, 0x73, 0x22, 0x3a, 0x22, 0x63, 0x61, 0x66, 0xe9, 0x22, 0x7d]), /not valid UTF-8/], // {"s":"café"} in latin1
      ['{"f":1e400}', /out of range/],
      [`[${'9'.repeat(400)}]`, /out of range/],
      [`{"n":1${'0'.repeat(250)}e99}`, /out of range/], // a long mantissa, a short exponent
    ] as const) {
      const res = await post(body);
      expect(res.status, String(body)).toBe(400);
      expect(JSON.parse(res.body)).toMatchObject({ error: 'INVALID_BODY', message: expect.stringMatching(reason) });
    }
    // Within range, and exponent-like text in strings: fine. A declared other charset is decoded.
    const fine = await post('{"max":1.7976931348623157e308,"id":"abe123","tiny":1e-400}');
    expect(fine.status).toBe(200);
    expect((await stored(JSON.parse(fine.body).requestId)).body).toEqual({ max: 1.7976931348623157e308, id: 'abe123', tiny: 0 });
    // An unknown charset is read as UTF-8, strictly; UTF-16 with a big-endian byte order mark is big-endian.
    expect((await post(Buffer.from('{"s":"caf\xe9"}', 'latin1'), 'application/json; charset=bogus-charset')).status).toBe(400);
    // Other names of UTF-8, and UTF-16 with an unpaired surrogate: invalid bytes are a 400 there too.
    for (const type of ['application/json; charset=unicode-1-1-utf-8', 'application/json; charset="utf-8 "']) {
      expect((await post(Buffer.from([0x7b, 0x22, 0x73, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x80, 0x22, 0x7d]), type)).status, type).toBe(400);
    }
    const surrogate = Buffer.concat([Buffer.from('{"s":"', 'utf16le'), Buffer.from([0x00, 0xd8]), Buffer.from('"}', 'utf16le')]);
    const lone = await post(surrogate, 'application/json; charset=utf-16le');
    expect(lone.status).toBe(400);
    expect(JSON.parse(lone.body).message).toMatch(/not valid utf-16le/);
    const be = Buffer.from('\ufeff{"s":"é"}', 'utf16le').swap16();
    const utf16be = await post(be, 'application/json; charset=utf-16');
    expect(utf16be.status, utf16be.body).toBe(200);
    expect((await stored(JSON.parse(utf16be.body).requestId)).body).toEqual({ s: 'é' });
    const latin1 = await post(Buffer.from('{"s":"café"}', 'latin1'), 'application/json; charset=iso-8859-1');
    expect(latin1.status).toBe(200);
    expect((await stored(JSON.parse(latin1.body).requestId)).body).toEqual({ s: 'café' });
    // CloudEvents' JSON too, a byte order mark ignored as for application/json.
    const ce = await post(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"specversion":"1.0","id":"1","source":"/s","type":"t"}')]), 'application/cloudevents+json');
    expect(ce.status, ce.body).toBe(200);
    expect((await post('{"specversion":"1.0","id":"1","source":"/s","type":"t","n":1e999}', 'application/cloudevents+json')).status).toBe(400);
  });

  it('Expect: 100-continue is answered only once the body is wanted: a refusal comes instead of an invitation', async () => {
    const u = new URL(h.url);
    /** Send only the head; resolves with what the server sends first (before any body byte). */
    const head = (path: string, headers: string, body?: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = net.createConnection({ host: u.hostname, port: Number(u.port) });
        let got = '';
        socket.on('error', reject);
        socket.on('data', (d) => {
          got += d.toString('latin1');
          if (got.startsWith('HTTP/1.1 100') && body !== undefined && got.endsWith('\r\n\r\n')) {
            socket.write(body);
            body = undefined;
          }
        });
        socket.on('close', () => resolve(got));
        socket.setTimeout(3_000, () => socket.destroy());
        socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n${headers}\r\n`);
      });
    const tooLarge = await head('/hook/orders', `Content-Type: application/json\r\nContent-Length: ${2 * 1024 * 1024}\r\n`);
    expect(tooLarge).toMatch(/^HTTP\/1\.1 413 /);
    expect(tooLarge).not.toMatch(/100 Continue/);
    const unknown = await head('/hook/nobody-here', 'Content-Type: application/json\r\nContent-Length: 2\r\n');
    expect(unknown).toMatch(/^HTTP\/1\.1 404 /);
    // Wanted: 100 first, then the body is read and stored.
    const ok = await head('/hook/orders', 'Content-Type: application/json\r\nContent-Length: 11\r\n', '{"ok":true}');
    expect(ok).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    expect(JSON.parse(ok.slice(ok.lastIndexOf('\r\n\r\n') + 4))).toMatchObject({ message: 'thank you' });
    // No body to wait for (Content-Length: 0): the connection stays open (Node closed it after an
    // answer to an Expect: 100-continue request that had no 100 before it).
    const empty = await exchange(postJson('/hook/orders?expect=empty', '', 'Expect: 100-continue\r\n') + 'GET /hook/orders?after=empty HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(statusesOf(empty)).toEqual([100, 200, 200]);
    expect(empty).not.toMatch(/connection: close/i);
    // An expectation hookd cannot meet: 417 in the one error shape (Node's own had no body), the body dropped, the connection kept.
    const other = await exchange(postJson('/hook/orders?expect=other', '{}', 'Expect: 200-ok\r\n') + 'GET /hook/orders?after=417 HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(statusesOf(other)).toEqual([417, 200]);
    expect(JSON.parse(other.slice(other.indexOf('\r\n\r\n') + 4, other.indexOf('}') + 1))).toMatchObject({ error: 'EXPECTATION_FAILED', message: expect.stringMatching(/100-continue/) });
    expect(await storedWith('orders', 'expect', 'other')).toEqual([]);
    // The API still gets its 100 at once.
    expect((await h.api('PUT', '/api/flows/expecting', { steps: [] })).status).toBe(201);
    const api = await head('/api/flows/expecting/stop', `Authorization: Bearer ${h.token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n`, '{}');
    expect(api).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
  });

  it('JSON nested too deeply to store: 400 with the reason; a UTF-8 byte order mark is ignored', async () => {
    const deep = await fetch(`${h.url}/hook/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '['.repeat(20_000) + ']'.repeat(20_000) });
    expect(deep.status).toBe(400);
    expect(((await deep.json()) as any).message).toMatch(/nested too deeply/);

    const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"bom":true}')]);
    const res = await fetch(`${h.url}/hook/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bytes });
    expect(res.status).toBe(200);
    const m = await stored(((await res.json()) as any).requestId);
    expect(m.body).toEqual({ bom: true });
    expect(Buffer.from(m.rawBody, 'base64').equals(bytes)).toBe(true);
  });

  it('413 when Content-Length announces too much, before reading anything', async () => {
    const res = await raw({ method: 'POST', path: '/hook/orders', headers: { 'content-type': 'application/json', 'content-length': String(2 * 1024 * 1024) } });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).error).toBe('PAYLOAD_TOO_LARGE');
  });

  it('a sender writing all of a too-large body reads the 413, not a reset connection', async () => {
    // hookd in a process of its own (in this one the sender and the server share an event loop and
    // the reset does not show). A plain fetch sends its whole body before it reads the answer:
    // closing the connection under it made it fail with EPIPE, which senders retry, instead of the
    // final 413 (4 MB bodies: 6 of 6 fetches failed before the change).
    const dataDir = tempDir('hookd-413-');
    const child = await spawnHookd({ DATA_DIR: dataDir, HOOKD_ADMIN_TOKEN: 't', LISTEN_PORT: '0', PAYLOAD_SIZE_LIMIT: '2mb', WORKER_CONCURRENCY: '0' });
    try {
      expect((await adminCall(child.url, 't', 'PUT', '/api/flows/big', { steps: [] })).status).toBe(201);
      expect(child.output()).toMatch(/HOOKD_ADMIN_TOKEN is shorter than 16 characters/); // works, with a warning
      // A refused admin call is logged (who, what, why), never with the token it tried.
      expect((await adminCall(child.url, 'guess-0123456789', 'GET', '/api/flows')).status).toBe(401);
      await waitFor(() => /"reason":"unknown token".*"msg":"admin API call refused"|admin API call refused.*unknown token/.test(child.output()));
      expect(child.output()).not.toContain('guess-0123456789');
      for (const size of [2.2e6, 4e6, 8e6]) {
        for (let i = 0; i < 4; i++) {
          const res = await fetch(`${child.url}/hook/big`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.alloc(size, 97) });
          expect(res.status, `${size} bytes, try ${i + 1}`).toBe(413);
          expect(((await res.json()) as any).error).toBe('PAYLOAD_TOO_LARGE');
        }
      }
      // Announced far beyond what is worth reading: answered at once, and the connection closes.
      const u = new URL(child.url);
      const huge = await new Promise<http.IncomingMessage>((resolve, reject) => {
        const req = http.request({ host: u.hostname, port: u.port, agent: false, method: 'POST', path: '/hook/big', headers: { 'content-type': 'application/json', 'content-length': String(64 * 1024 * 1024) } }, resolve);
        req.on('error', reject);
        req.end();
      });
      expect(huge.statusCode).toBe(413);
      expect(huge.headers.connection).toBe('close');
      huge.resume();
    } finally {
      child.proc.kill('SIGTERM');
      await child.exited;
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);

  it('413 while streaming a chunked body: answered long before the sender is done', async () => {
    const u = new URL(h.url);
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const result = await new Promise<{ status: number; sentWhenAnswered: number }>((resolve, reject) => {
      let sent = 0;
      let answered = false;
      const req = http.request({ host: u.hostname, port: u.port, method: 'POST', path: '/hook/orders', headers: { 'content-type': 'application/json' } }, (res) => {
        answered = true;
        resolve({ status: res.statusCode!, sentWhenAnswered: sent });
        res.resume();
      });
      req.on('error', (err) => (answered ? undefined : reject(err)));
      const pump = () => {
        // Up to 64 MB: a server that buffered everything would only answer at the end.
        while (!answered && sent < 64 * 1024 * 1024) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        if (!answered) req.end();
      };
      pump();
    });
    expect(result.status).toBe(413);
    expect(result.sentWhenAnswered).toBeLessThan(16 * 1024 * 1024);
    const list = await h.api('GET', '/api/requests?flowId=orders&limit=1000');
    expect(list.body.items.every((m: any) => m.size <= 1024 * 1024)).toBe(true);
  });
});

describe('request ids', () => {
  it('honours a sane x-request-id and replaces an insane one with a UUIDv7', async () => {
    const sane = `order-1.2_${Date.now()}`;
    const a = await fetch(`${h.url}/hook/orders`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': sane }, body: '{}' });
    expect(((await a.json()) as any).requestId).toBe(sane);
    for (const bad of ['has space', 'x'.repeat(129), 'semi;colon', '.', '..']) {
      const b = await fetch(`${h.url}/hook/orders`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': bad }, body: '{}' });
      expect(((await b.json()) as any).requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }
  });

  it("a repeated x-request-id is stored once; another flow's sender using the same id gets an id of that flow (stored once too), never a 409", async () => {
    const id = `dup-${Date.now()}`;
    const send = (flow: string) =>
      fetch(`${h.url}/hook/${flow}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': id }, body: '{"n":1}' });
    expect((await send('orders')).status).toBe(200);
    expect((await send('orders')).status).toBe(200);
    const list = await h.api('GET', '/api/requests?flowId=orders&limit=1000');
    expect(list.body.items.filter((m: any) => m.id === id)).toHaveLength(1);
    // An unrelated sender on another flow happens to use the same id: not refused (a 409 would
    // block it for good, and tell it which ids other flows have seen), and its retries dedupe.
    const other = await send('other');
    expect(other.status).toBe(200);
    const otherId = ((await other.json()) as { requestId: string }).requestId;
    expect(otherId).toMatch(/^rid-[A-Za-z0-9_-]{32}$/);
    const retried = await send('other');
    expect(((await retried.json()) as { requestId: string }).requestId).toBe(otherId);
    const others = await h.api('GET', '/api/requests?flowId=other&limit=1000');
    expect(others.body.items.filter((m: any) => m.id === otherId)).toHaveLength(1);
    expect((await stored(otherId)).headers['x-request-id']).toBe(id);
  });
});

describe('pre-configured feedback', () => {
  it('answers with the flow\'s status, headers and body after committing', async () => {
    const res = await fetch(`${h.url}/hook/custom`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(202);
    expect(res.headers.get('x-hello')).toBe('world');
    expect(await res.json()).toEqual({ ok: true });
    const id = res.headers.get('x-request-id')!;
    expect((await stored(id)).flowId).toBe('custom');
  });

  it('sends a JSON body under a configured non-JSON content type as its JSON text (not a 500 after the commit)', async () => {
    const response = { headers: { 'content-type': 'text/plain' }, body: { ok: true } };
    expect((await h.api('PUT', '/api/flows/plain-feedback', { trigger: { type: 'webhook', response } })).status).toBe(201);
    const res = await fetch(`${h.url}/hook/plain-feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toBe('{"ok":true}');
    // The default answer too, under a configured type and no body.
    await h.api('PUT', '/api/flows/plain-feedback', { trigger: { type: 'webhook', response: { headers: { 'content-type': 'text/plain' } } } });
    const res2 = await fetch(`${h.url}/hook/plain-feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res2.status).toBe(200);
    expect(JSON.parse(await res2.text())).toMatchObject({ message: 'thank you' });
  });
});

describe('methods, framings and URLs nobody sends to a webhook', () => {
  it('DELETE, TRACE and every other method but the webhook ones: 405 with Allow, for unknown flows too (nothing revealed)', async () => {
    // WebDAV, cache purges, QUERY…: they answered 404 "Route … not found", as if the URL did not exist.
    const others = ['DELETE', 'TRACE', 'PROPFIND', 'MKCOL', 'SEARCH', 'REPORT', 'QUERY', 'PURGE', 'LINK', 'LOCK', 'NOTIFY', 'SUBSCRIBE'];
    for (const path of ['/hook/orders', '/hook/orders/x', '/hook/nobody-here']) {
      for (const method of others) {
        const res = await raw({ method, path });
        expect(res.status, `${method} ${path}`).toBe(405);
        expect(res.headers.allow).toBe('HEAD, GET, POST, PUT, PATCH, OPTIONS');
        expect(JSON.parse(res.body)).toMatchObject({ error: 'METHOD_NOT_ALLOWED' });
      }
    }
  });

  it('a transfer coding other than chunked: 501; a malformed URL or HTTP message: 400 in the one error shape', async () => {
    const gz = await raw({ method: 'POST', path: '/hook/orders', headers: { 'content-type': 'application/json', 'transfer-encoding': 'gzip, chunked' }, body: '{}' });
    expect(gz.status).toBe(501);
    expect(JSON.parse(gz.body)).toMatchObject({ error: 'NOT_IMPLEMENTED', message: expect.stringMatching(/Content-Encoding/) });
    const badUrl = await raw({ method: 'POST', path: '/hook/orders/%zz', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(badUrl.status).toBe(400);
    expect(JSON.parse(badUrl.body)).toEqual({ error: 'BAD_REQUEST', message: expect.stringMatching(/not a valid url/) });
    const u = new URL(h.url);
    const garbage = await new Promise<string>((resolve, reject) => {
      const socket = net.createConnection({ host: u.hostname, port: Number(u.port) });
      let got = '';
      socket.on('data', (d) => (got += d.toString('latin1')));
      socket.on('error', reject);
      socket.on('close', () => resolve(got));
      socket.write('POST /hook/orders HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n');
    });
    expect(garbage).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(garbage.slice(garbage.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'BAD_REQUEST' });
  });
});

/** Write these bytes on one connection; resolves with all the server sent, once it closed or fell silent. */
function exchange(bytes: string | Buffer, idleMs = 1_000): Promise<string> {
  const u = new URL(h.url);
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: u.hostname, port: Number(u.port) });
    let got = '';
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(done, idleMs);
    };
    socket.on('data', (d) => {
      got += d.toString('latin1');
      arm();
    });
    socket.on('error', reject);
    socket.on('close', done);
    socket.write(bytes);
    arm();
  });
}
const statusesOf = (answers: string) => [...answers.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
const postJson = (path: string, body: string, extra = '') =>
  `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
const storedWith = async (flowId: string, key: string, value: string) =>
  (await h.api('GET', `/api/requests?flowId=${flowId}&limit=1000`)).body.items.filter((m: any) => m.query[key] === value);

describe('one connection, several requests (keep-alive, pipelining)', () => {
  it('requests written at once are answered in order, each stored once', async () => {
    const tag = `p${Date.now()}`;
    const reqs = Array.from({ length: 10 }, (_, i) => postJson(`/hook/orders?tag=${tag}&i=${i}`, `{"i":${i}}`)).join('');
    const answers = await exchange(reqs);
    expect(statusesOf(answers)).toEqual(Array(10).fill(200));
    const ids = [...answers.matchAll(/"requestId":"([^"]+)"/g)].map((m) => m[1]!);
    const bodies = await Promise.all(ids.map(async (id) => (await stored(id)).body.i));
    expect(bodies).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(await storedWith('orders', 'tag', tag)).toHaveLength(10);
  });

  it('a malformed request after well-formed ones: those are answered (they were stored), then the 400/431 closes the connection', async () => {
    const tag = `m${Date.now()}`;
    const good = postJson(`/hook/orders?tag=${tag}&i=0`, '{}') + postJson(`/hook/orders?tag=${tag}&i=1`, '{}');
    // Headers too large (431), garbage (400): before, the error was written at once and the
    // connection closed under the answers of the stored requests — the sender saw only the error,
    // retried, and the requests were stored twice.
    for (const [bad, status] of [[`GET /hook/orders HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431], ['GARBAGE\r\n\r\n', 400]] as const) {
      const answers = await exchange(good + bad);
      expect(statusesOf(answers), answers.slice(0, 300)).toEqual([200, 200, status]);
    }
    expect(await storedWith('orders', 'tag', tag)).toHaveLength(4);
    // A body longer than its Content-Length (a sender counting characters, not bytes): the request
    // as framed is stored and answered; the bytes left over are the 400.
    const text = `POST /hook/orders?tag=${tag}&short=1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello world`;
    expect(statusesOf(await exchange(text))).toEqual([200, 400]);
    // `Connection: close`, and more bytes after the request: its answer, then the connection closes.
    const closing = postJson(`/hook/orders?tag=${tag}&close=1`, '{}', 'Connection: close\r\n') + postJson(`/hook/orders?tag=${tag}&close=2`, '{}');
    expect(statusesOf(await exchange(closing))).toEqual([200]);
    expect(await storedWith('orders', 'close', '1')).toHaveLength(1);
    expect(await storedWith('orders', 'close', '2')).toHaveLength(0);
  });

  it('a request that follows one answered with Connection: close is neither run nor stored (its sender never gets an answer)', async () => {
    const tag = `c${Date.now()}`;
    // 501 closes the connection: the GET written behind it was stored all the same, unanswered.
    const gz = `POST /hook/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`;
    expect(statusesOf(await exchange(gz + `GET /hook/orders?tag=${tag}&after=501 HTTP/1.1\r\nHost: x\r\n\r\n`))).toEqual([501]);
    // A refusal of an `Expect: 100-continue` request closes the connection (its body may follow unasked).
    const expecting = postJson('/hook/nobody-here', '{}', 'Expect: 100-continue\r\n');
    expect(statusesOf(await exchange(expecting + `GET /hook/orders?tag=${tag}&after=404 HTTP/1.1\r\nHost: x\r\n\r\n`))).toEqual([404]);
    await new Promise((r) => setTimeout(r, 300));
    expect(await storedWith('orders', 'tag', tag)).toEqual([]);
  });
});

describe('many header lines', () => {
  it('a thousand or more: 431, nothing stored — never a request whose Content-Type and Content-Length were dropped', async () => {
    const tag = `n${Date.now()}`;
    const lines = (n: number) => Array.from({ length: n }, (_, i) => `x-h${i}: ${i}\r\n`).join('');
    // Node kept the first ~1000 lines and dropped the rest without a word: the body, still framed by
    // its Content-Length, was read as none, and the request was stored empty under a 200.
    const tooMany = await exchange(`POST /hook/orders?tag=${tag}&n=1100 HTTP/1.1\r\nHost: x\r\n${lines(1100)}Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{"lost":1}`);
    expect(statusesOf(tooMany)).toEqual([431]);
    const fine = await exchange(`POST /hook/orders?tag=${tag}&n=900 HTTP/1.1\r\nHost: x\r\n${lines(900)}Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{"kept":1}`);
    expect(statusesOf(fine)).toEqual([200]);
    const stored = await storedWith('orders', 'tag', tag);
    expect(stored.map((m: any) => [m.query.n, m.body, Object.keys(m.headers).length])).toEqual([['900', { kept: 1 }, 903]]);
  });
});

describe('Host', () => {
  it('an HTTP/1.1 request without Host, or with two: 400 in the one error shape, nothing stored; HTTP/1.0 needs none', async () => {
    const tag = `h${Date.now()}`;
    const body = '{}';
    const without = await exchange(`POST /hook/orders?tag=${tag} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n${body}`);
    // Node's own answer had no body at all.
    expect(statusesOf(without)).toEqual([400]);
    expect(JSON.parse(without.slice(without.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'BAD_REQUEST', message: expect.stringMatching(/Host/) });
    // RFC 9112 §3.2: more than one Host is a 400 (a proxy and hookd could each take another).
    const twice = await exchange(`POST /hook/orders?tag=${tag} HTTP/1.1\r\nHost: a.example\r\nhost: b.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n${body}`);
    expect(statusesOf(twice)).toEqual([400]);
    expect(JSON.parse(twice.slice(twice.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'BAD_REQUEST', message: expect.stringMatching(/Host/) });
    expect(await storedWith('orders', 'tag', tag)).toEqual([]);
    const old = await exchange(`POST /hook/orders?tag=${tag} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n${body}`);
    expect(old).toMatch(/^HTTP\/1\.1 200 /);
    expect(await storedWith('orders', 'tag', tag)).toHaveLength(1);
  });

  it('an HTTP/1.0 request declaring a body type without Content-Length: 411, not a 200 for a body taken as empty', async () => {
    // HTTP/1.0 has no chunked framing: Node reads no body, and the one the sender wrote until it
    // closed was lost — answered 200 (before: a 400 for its "next request", though stored empty).
    const tag = `l${Date.now()}`;
    const answer = await exchange(`POST /hook/orders?tag=${tag} HTTP/1.0\r\nContent-Type: text/plain\r\n\r\nthe body, until the sender closes`);
    expect(statusesOf(answer)).toEqual([411]);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'LENGTH_REQUIRED' });
    // A bodiless ping (no Content-Type) is still fine.
    expect(statusesOf(await exchange(`POST /hook/orders?tag=${tag}&ping=1 HTTP/1.0\r\n\r\n`))).toEqual([200]);
    expect((await storedWith('orders', 'tag', tag)).map((m: any) => m.query.ping)).toEqual(['1']);
  });
});

describe('ids of 128 characters (the longest allowed)', () => {
  it('reach the hook, the flow and the request routes', async () => {
    const flowId = 'f'.repeat(128);
    expect((await h.api('PUT', `/api/flows/${flowId}`, { steps: [] })).status).toBe(201);
    expect((await fetch(`${h.url}/hook/${flowId}`, { method: 'HEAD' })).status).toBe(200);
    const requestId = 'r'.repeat(128);
    const res = await fetch(`${h.url}/hook/${flowId}/a/b`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': requestId }, body: '{}' });
    expect(res.status).toBe(200);
    expect((await h.api('GET', `/api/requests/${requestId}`)).body).toMatchObject({ id: requestId, flowId, path: '/a/b' });
    expect((await h.api('GET', `/api/flows/${flowId}`)).status).toBe(200);
    expect((await fetch(`${h.url}/hook/${'u'.repeat(128)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(404);
    expect((await h.api('DELETE', `/api/flows/${flowId}`)).status).toBe(204);
  });
});

describe('REQUEST_TIMEOUT', () => {
  it('closes the connection of a sender that stalls mid-body; a slow but steady one within the limit is stored', async () => {
    const app = await startHookd({ REQUEST_TIMEOUT: '1s', WORKER_CONCURRENCY: '0', PAYLOAD_SIZE_LIMIT: '1mb' });
    try {
      await app.api('PUT', '/api/flows/slowpoke', { steps: [] });
      const { port } = new URL(app.url);
      const send = (chunks: string[], gapMs: number, length: number) =>
        new Promise<{ status?: number; error?: string; ms: number }>((resolve) => {
          const t0 = Date.now();
          const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/hook/slowpoke', headers: { 'content-type': 'application/json', 'content-length': String(length) } }, (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode!, ms: Date.now() - t0 }));
          });
          req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message, ms: Date.now() - t0 }));
          let i = 0;
          const next = () => {
            if (i >= chunks.length) return;
            req.write(chunks[i++]);
            setTimeout(next, gapMs);
          };
          next();
        });
      // Half a body, then nothing: cut off after the limit (Node answers 408 and closes).
      const stalled = await send(['{"pad":"xxxx'], 10_000, 100);
      expect(stalled.status === 408 || stalled.error === 'ECONNRESET', JSON.stringify(stalled)).toBe(true);
      expect(stalled.ms).toBeGreaterThanOrEqual(900);
      expect(stalled.ms).toBeLessThan(5_000);
      // Three pieces 200 ms apart: whole within the second.
      const steady = await send(['{"a":', '1,"b":', '2}'], 200, 13);
      expect(steady.status).toBe(200);

      // Refused mid-body (413), then the sender stalls: one answer on the connection, never a 408
      // after it (a keep-alive client would take that for the answer to its next request).
      const answers = await new Promise<string>((resolve, reject) => {
        const socket = net.createConnection({ host: '127.0.0.1', port: Number(port) });
        let got = '';
        socket.on('data', (d) => (got += d.toString('latin1')));
        socket.on('error', reject);
        socket.on('close', () => resolve(got));
        socket.write(`POST /hook/slowpoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
        const chunk = 'x'.repeat(64 * 1024);
        for (let i = 0; i < 20; i++) socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`); // 1.25 MB, over the 1 MB limit
        setTimeout(() => socket.destroy(), 3_000);
      });
      expect(answers).toMatch(/^HTTP\/1\.1 413 /);
      expect(answers.match(/HTTP\/1\.1 \d{3}/g)).toHaveLength(1);
    } finally {
      await app.close();
    }
  }, 30_000);
});
