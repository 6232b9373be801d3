/**
 * Issue 5 over real HTTP: every payload type through the ingress (XML, forms, multipart with files,
 * text, binary, CloudEvents), XML attacks, limits mid-stream without leftover files, rejected
 * requests without leftover files, signed multipart, the download routes, payloadType, the
 * retention purge and the attachment sweep, and an http step forwarding a request's files.
 * Multipart bodies are made by undici's FormData (global) and sent byte for byte with node:http.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningHookd, startHookd, waitFor } from '../helpers/hookd.js';

const MiB = 1024 * 1024;
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const rnd = () => randomBytes(8).toString('hex');

interface Sent {
  method?: string;
  path: string;
  headers?: Record<string, string | string[]>;
  body?: Buffer | string;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json: any;
}

/** One request on its own connection, bytes exactly as given. */
function send(base: string, o: Sent): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method: o.method ?? 'POST', path: o.path, headers: o.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        let json: unknown;
        try {
          json = body.length ? JSON.parse(body.toString('utf8')) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, body, json });
      });
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

/**
 * Stream `head`, then `filler` bytes (generated, chunked transfer unless a Content-Length is given)
 * until hookd answers; resolves with the status, the headers and how much had been sent by then.
 */
function streamUntilAnswered(
  base: string,
  o: { path: string; headers: Record<string, string>; head?: Buffer; max: number },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; json: any; sentWhenAnswered: number; closed: Promise<void> }> {
  const u = new URL(base);
  const chunk = Buffer.alloc(64 * 1024, 'x');
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered = false;
    let closedResolve!: () => void;
    const closed = new Promise<void>((r) => (closedResolve = r));
    const req = http.request({ host: u.hostname, port: u.port, method: 'POST', path: o.path, headers: o.headers, agent: false }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, json: text ? JSON.parse(text) : undefined, sentWhenAnswered: sent, closed });
      });
    });
    req.on('close', () => closedResolve());
    req.on('error', (err) => (answered ? undefined : reject(err)));
    req.on('socket', (s) => s.on('close', () => closedResolve()));
    if (o.head) {
      req.write(o.head);
      sent += o.head.length;
    }
    const pump = () => {
      while (!answered && sent < o.max) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      if (!answered) req.end();
    };
    pump();
  });
}

/** A FormData's exact bytes and Content-Type, as undici encodes them. */
async function encodeForm(form: FormData): Promise<{ bytes: Buffer; contentType: string }> {
  const req = new Request('http://encode.invalid/', { method: 'POST', body: form });
  return { bytes: Buffer.from(await req.arrayBuffer()), contentType: req.headers.get('content-type')! };
}

/** Every file under DATA_DIR/attachments (relative paths). */
function attachmentFiles(h: RunningHookd): string[] {
  const dir = path.join(h.config.dataDir, 'attachments');
  try {
    return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
      .filter((d) => d.isFile())
      .map((d) => path.relative(dir, path.join(d.parentPath ?? (d as unknown as { path: string }).path, d.name)))
      .sort();
  } catch {
    return [];
  }
}

function bind(h: RunningHookd) {
  const auth = { authorization: `Bearer ${h.token}` };
  return {
    hook: (o: Sent) => send(h.url, o),
    async flow(id: string, trigger: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
      const res = await h.api('POST', '/api/flows', { id, trigger: { type: 'webhook', ...trigger }, ...extra });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    },
    async stored(requestId: string) {
      const res = await h.api('GET', `/api/requests/${requestId}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body;
    },
    /** GET an admin route as bytes. */
    download: (p: string, headers: Record<string, string> = {}) => send(h.url, { method: 'GET', path: p, headers: { ...auth, ...headers } }),
  };
}

// ---------------------------------------------------------------------------------------------

let h: RunningHookd;
let hook: ReturnType<typeof bind>['hook'];
let flow: ReturnType<typeof bind>['flow'];
let stored: ReturnType<typeof bind>['stored'];
let download: ReturnType<typeof bind>['download'];
const hmacSecret = `hmac-${rnd()}`;
const token = `tok-${rnd()}`;

beforeAll(async () => {
  h = await startHookd({ PAYLOAD_SIZE_LIMIT: '1mb', ATTACHMENT_SIZE_LIMIT: '8mb', WORKER_CONCURRENCY: '0' });
  ({ hook, flow, stored, download } = bind(h));
  await flow('p');
  await flow('p-hmac', { auth: { type: 'hmac', header: 'x-sig', secrets: [hmacSecret] } });
  await flow('p-token', { auth: { type: 'token', secrets: [token] } });
  await flow('p-b64', { payloadType: 'base64' });
  await flow('p-ignore', { payloadType: 'ignore' });
});
afterAll(() => h.close());

const accepted = async (res: Answer) => {
  expect(res.status, res.body.toString()).toBe(200);
  return stored(res.json.requestId);
};

describe('XML', () => {
  const doc = `<?xml version="1.0" encoding="UTF-8"?>
<order id="7" xmlns:x="urn:x">
  <item sku="a">1</item>
  <item>2</item>
  <note>a &amp; b</note>
  <empty/>
  <x:n>007</x:n>
</order>`;

  it('becomes JSON by the documented mapping; the raw bytes are kept', async () => {
    const m = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'application/xml' }, body: doc }));
    expect(m.body).toEqual({
      order: { '@_id': '7', '@_xmlns:x': 'urn:x', item: [{ '@_sku': 'a', '#text': '1' }, '2'], note: 'a & b', empty: '', 'x:n': '007' },
    });
    expect(Buffer.from(m.rawBody, 'base64').toString('utf8')).toBe(doc);
    const t = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'text/xml; charset=utf-8' }, body: '<a>ü</a>' }));
    expect(t.body).toEqual({ a: 'ü' });
  });

  it('invalid XML → 400 with line and column', async () => {
    const res = await hook({ path: '/hook/p', headers: { 'content-type': 'application/xml' }, body: '<a>\n  <b>\n  <c></b>\n</a>' });
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('INVALID_BODY');
    expect(res.json.message).toMatch(/^Invalid XML body: .*\(line 3, column \d+\)/);
  });

  it('refuses attack documents fast: billion laughs, external entities, deep nesting', async () => {
    const lol = ['<?xml version="1.0"?>', '<!DOCTYPE lolz [', ' <!ENTITY lol "lol">'];
    for (let i = 1; i <= 9; i++) lol.push(` <!ENTITY lol${i} "${`&lol${i === 1 ? '' : i - 1};`.repeat(10)}">`);
    lol.push(']>', '<lolz>&lol9;</lolz>');
    const attacks = {
      'billion laughs': lol.join('\n'),
      xxe: '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>',
      'parameter entity': '<!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]><d/>',
      'deep nesting': `${'<a>'.repeat(100_000)}${'</a>'.repeat(100_000)}`,
    };
    for (const [name, body] of Object.entries(attacks)) {
      const t = performance.now();
      const res = await hook({ path: '/hook/p', headers: { 'content-type': 'application/xml' }, body });
      const ms = performance.now() - t;
      expect(res.status, name).toBe(400);
      expect(res.json.message, name).toMatch(name === 'deep nesting' ? /nested deeper than 100/ : /DOCTYPE|ENTITY/);
      expect(ms, name).toBeLessThan(1000);
    }
  });
});

describe('forms, text', () => {
  it('urlencoded → object, repeated names → arrays, charset honoured', async () => {
    const m = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1&b=x&b=y&c=caf%C3%A9+au+lait&flag' }));
    expect(m.body).toEqual({ a: '1', b: ['x', 'y'], c: 'café au lait', flag: '' });
    const l = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'application/x-www-form-urlencoded; charset=iso-8859-1' }, body: 'c=caf%E9' }));
    expect(l.body).toEqual({ c: 'café' });
  });

  it('text/* → the text', async () => {
    const m = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'text/csv' }, body: 'a,b\n1,2\n' }));
    expect(m.body).toBe('a,b\n1,2\n');
  });

  it('windows-1252 and its aliases (iso-8859-1, latin1, us-ascii) are read by the Encoding Standard: 0x80 is €, 0x93 “', async () => {
    // Node 20.18.3+ decodes windows-1252 as ISO-8859-1, bytes 0x80–0x9F as C1 controls (nodejs/node#60888):
    // a legacy sender's € and curly quotes were stored as U+0080, U+0093.
    const bytes = Buffer.from([0x80, 0x20, 0x93, 0x71, 0x94, 0x20, 0x63, 0x61, 0x66, 0xe9, 0x20, 0x9f, 0x81]);
    const expected = '€ “q” café Ÿ\u0081';
    for (const charset of ['windows-1252', 'ISO-8859-1', 'latin1', 'us-ascii', 'cp1252']) {
      const t = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': `text/plain; charset=${charset}` }, body: bytes }));
      expect(t.body, charset).toBe(expected);
      expect(Buffer.from(t.rawBody, 'base64').equals(bytes)).toBe(true);
    }
    const f = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'application/x-www-form-urlencoded; charset=windows-1252' }, body: 'price=%80+5&q=%93x%94' }));
    expect(f.body).toEqual({ price: '€ 5', q: '“x”' });
    const j = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'application/json; charset=iso-8859-1' }, body: Buffer.concat([Buffer.from('{"p":"'), Buffer.from([0x80]), Buffer.from('"}')]) }));
    expect(j.body).toEqual({ p: '€' });
    const x = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'application/xml' }, body: Buffer.concat([Buffer.from('<?xml version="1.0" encoding="windows-1252"?><p>'), Buffer.from([0x80]), Buffer.from('</p>')]) }));
    expect(x.body).toEqual({ p: '€' });
  });
});

describe('multipart/form-data', () => {
  it('keeps every file part (several named "file") with sha256; text fields are the body; downloads give the exact bytes', async () => {
    const files = [
      { name: 'invoice.pdf', type: 'application/pdf', bytes: randomBytes(300_000) },
      { name: 'photo.png', type: 'image/png', bytes: randomBytes(3000) },
      { name: 'Übersicht €.txt', type: 'text/plain', bytes: Buffer.from('grüße\n') },
    ];
    const form = new FormData();
    form.append('event', 'order.created');
    form.append('tag', 'a');
    form.append('tag', 'b');
    for (const f of files) form.append('file', new Blob([f.bytes], { type: f.type }), f.name);
    form.append('extra', new Blob([Buffer.from([0, 1, 2])], { type: 'application/octet-stream' }), 'x.bin');
    const { bytes, contentType } = await encodeForm(form);

    const res = await hook({ path: '/hook/p', headers: { 'content-type': contentType }, body: bytes });
    const m = await accepted(res);
    expect(m.body).toEqual({ event: 'order.created', tag: ['a', 'b'] });
    expect(m.attachments).toHaveLength(4);
    files.forEach((f, i) => {
      expect(m.attachments[i]).toMatchObject({ field: 'file', filename: f.name, contentType: f.type, size: f.bytes.length, sha256: sha256(f.bytes) });
    });
    expect(m.attachments[3]).toMatchObject({ field: 'extra', filename: 'x.bin', size: 3 });
    // The raw body (> 256 KiB) went to the store, byte for byte.
    expect(m.rawBody).toBe('');
    expect(m.rawAttachment).toMatchObject({ size: bytes.length, sha256: sha256(bytes) });
    expect(m.size).toBe(bytes.length);

    for (const [i, f] of files.entries()) {
      const att = m.attachments[i];
      const d = await download(`/api/requests/${m.id}/attachments/${att.id}`);
      expect(d.status).toBe(200);
      expect(d.body.equals(f.bytes)).toBe(true);
      expect(d.headers['content-type']).toBe(f.type);
      expect(d.headers['content-length']).toBe(String(f.bytes.length));
      expect(d.headers['x-content-type-options']).toBe('nosniff');
      expect(d.headers['content-disposition']).toContain(`filename*=UTF-8''${encodeURIComponent(f.name).replace(/[()*']/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`);
      expect(d.headers['content-disposition']).toMatch(/^attachment; filename="[\x20-\x7e]+"/);
    }
    const raw = await download(`/api/requests/${m.id}/raw`);
    expect(raw.status).toBe(200);
    expect(raw.body.equals(bytes)).toBe(true);
    expect(raw.headers['content-type']).toBe(contentType);
  });

  it('a small form keeps its raw body inline; a single Range is served as 206', async () => {
    const form = new FormData();
    form.append('file', new Blob([Buffer.from('0123456789')], { type: 'text/plain' }), 'digits.txt');
    const { bytes, contentType } = await encodeForm(form);
    const m = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': contentType }, body: bytes }));
    expect(Buffer.from(m.rawBody, 'base64').equals(bytes)).toBe(true);
    expect(m.rawAttachment).toBeUndefined();
    const part = await download(`/api/requests/${m.id}/attachments/${m.attachments[0].id}`, { range: 'bytes=2-5' });
    expect(part.status).toBe(206);
    expect(part.body.toString()).toBe('2345');
    expect(part.headers['content-range']).toBe('bytes 2-5/10');
    const tail = await download(`/api/requests/${m.id}/attachments/${m.attachments[0].id}`, { range: 'bytes=-3' });
    expect(tail.body.toString()).toBe('789');
    const bad = await download(`/api/requests/${m.id}/attachments/${m.attachments[0].id}`, { range: 'bytes=50-' });
    expect(bad.status).toBe(416);
    expect(bad.headers['content-range']).toBe('bytes */10');
    // An invalid range (last before first) is ignored: the whole file (RFC 9110 §14.2).
    const invalid = await download(`/api/requests/${m.id}/attachments/${m.attachments[0].id}`, { range: 'bytes=5-2' });
    expect(invalid.status).toBe(200);
    expect(invalid.body.toString()).toBe('0123456789');
    const raw = await download(`/api/requests/${m.id}/raw`);
    expect(raw.body.equals(bytes)).toBe(true);
  });

  it('a malformed body → 400, no file left behind', async () => {
    const before = attachmentFiles(h);
    const form = new FormData();
    form.append('file', new Blob([randomBytes(100_000)]), 'a.bin');
    const { bytes, contentType } = await encodeForm(form);
    // Truncated in the middle of the file part.
    const res = await hook({ path: '/hook/p', headers: { 'content-type': contentType }, body: bytes.subarray(0, 60_000) });
    expect(res.status).toBe(400);
    expect(res.json.message).toMatch(/^Invalid multipart body/);
    expect(attachmentFiles(h)).toEqual(before);
  });

  it('a part without a name (or an empty one) → 400 saying so, a file part too, no file left', async () => {
    const before = attachmentFiles(h);
    const part = (disposition: string, body: string) => `--b0undary\r\nContent-Disposition: ${disposition}\r\n\r\n${body}\r\n`;
    for (const body of [
      part('form-data; name=""', 'foo'),
      part('form-data', 'foo'),
      part('form-data; name="ok"', 'x') + part('form-data; filename="a.bin"', 'bytes'),
    ]) {
      const res = await hook({ path: '/hook/p', headers: { 'content-type': 'multipart/form-data; boundary=b0undary' }, body: `${body}--b0undary--\r\n` });
      expect(res.status, body).toBe(400);
      expect(res.json.message).toMatch(/^Invalid multipart body: a part has no name/);
    }
    expect(attachmentFiles(h)).toEqual(before);
  });

  it('a missing boundary is refused before the body is read, and the connection is closed', async () => {
    const before = attachmentFiles(h);
    const r = await streamUntilAnswered(h.url, { path: '/hook/p', headers: { 'content-type': 'multipart/form-data' }, max: 64 * MiB });
    expect(r.status).toBe(400);
    expect(r.headers.connection).toBe('close');
    expect(r.sentWhenAnswered).toBeLessThan(16 * MiB);
    await r.closed;
    expect(attachmentFiles(h)).toEqual(before);
  });
});

describe('binary bodies', () => {
  it('go to the attachment store: body null, attachments[0] = rawAttachment, exact bytes from both routes', async () => {
    const bytes = randomBytes(2 * MiB + 17);
    const m = await accepted(
      await hook({ path: '/hook/p', headers: { 'content-type': 'application/pdf', 'content-disposition': 'attachment; filename="report.pdf"' }, body: bytes }),
    );
    expect(m.body).toBeNull();
    expect(m.attachments).toEqual([m.rawAttachment]);
    expect(m.rawAttachment).toMatchObject({ filename: 'report.pdf', contentType: 'application/pdf', size: bytes.length, sha256: sha256(bytes) });
    const d = await download(`/api/requests/${m.id}/attachments/${m.rawAttachment.id}`);
    expect(d.body.equals(bytes)).toBe(true);
    expect(d.headers['content-type']).toBe('application/pdf');
    expect(d.headers['content-disposition']).toBe(`attachment; filename="report.pdf"; filename*=UTF-8''report.pdf`);
    expect((await download(`/api/requests/${m.id}/raw`)).body.equals(bytes)).toBe(true);
  });

  it('over PAYLOAD_SIZE_LIMIT is fine up to ATTACHMENT_SIZE_LIMIT; beyond → 413 (by Content-Length, and mid-stream), no file left', async () => {
    const ok = await hook({ path: '/hook/p', headers: { 'content-type': 'application/octet-stream' }, body: randomBytes(5 * MiB) });
    expect(ok.status).toBe(200);
    const before = attachmentFiles(h);
    const announced = await hook({ path: '/hook/p', headers: { 'content-type': 'application/octet-stream', 'content-length': String(9 * MiB) } });
    expect(announced.status).toBe(413);
    const r = await streamUntilAnswered(h.url, { path: '/hook/p', headers: { 'content-type': 'application/octet-stream' }, max: 64 * MiB });
    expect(r.status).toBe(413);
    expect(r.json.error).toBe('PAYLOAD_TOO_LARGE');
    expect(r.headers.connection).toBe('close');
    expect(r.sentWhenAnswered).toBeLessThan(24 * MiB);
    await r.closed;
    expect(attachmentFiles(h)).toEqual(before);
  });

  it('the request and its download routes need the admin token and only serve the request\'s own files', async () => {
    const a = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'application/zip' }, body: randomBytes(100) }));
    const b = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'application/zip' }, body: randomBytes(100) }));
    expect((await send(h.url, { method: 'GET', path: `/api/requests/${a.id}/attachments/${a.attachments[0].id}` })).status).toBe(401);
    expect((await send(h.url, { method: 'GET', path: `/api/requests/${a.id}/raw` })).status).toBe(401);
    const foreign = await download(`/api/requests/${a.id}/attachments/${b.attachments[0].id}`);
    expect(foreign.status).toBe(404);
    expect((await download(`/api/requests/nope/raw`)).status).toBe(404);
    expect((await download(`/api/requests/${a.id}/attachments/../../etc`)).status).toBe(404);
  });
});

describe('content codings (Content-Encoding)', () => {
  const order = { event: 'order.created', id: 'ord_1', lines: Array.from({ length: 50 }, (_, i) => ({ sku: `s${i}`, qty: i })) };
  const text = JSON.stringify(order);

  it('gzip, x-gzip, deflate, br and a chain are decoded: the body parsed, the decoded bytes stored, the coding headers dropped', async () => {
    const cases: [string, Buffer][] = [
      ['gzip', gzipSync(text)],
      ['x-gzip', gzipSync(text)],
      ['deflate', deflateSync(text)],
      ['br', brotliCompressSync(text)],
      ['identity', Buffer.from(text)],
      ['deflate, gzip', gzipSync(deflateSync(text))],
    ];
    for (const [coding, bytes] of cases) {
      const m = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'application/json', 'content-encoding': coding }, body: bytes }));
      expect(m.body, coding).toEqual(order);
      const raw = await download(`/api/requests/${m.id}/raw`);
      expect(raw.body.toString('utf8'), coding).toBe(text);
      if (coding !== 'identity') {
        expect(m.headers['content-encoding'], coding).toBeUndefined();
        expect(m.headers['content-length'], coding).toBeUndefined();
      }
    }
  });

  it('an unknown coding → 415 naming it, with Accept-Encoding; corrupt or truncated data → 400 naming the coding', async () => {
    const unknown = await hook({ path: '/hook/p', headers: { 'content-type': 'application/json', 'content-encoding': 'compress' }, body: gzipSync(text) });
    expect(unknown.status).toBe(415);
    expect(unknown.json.message).toContain('compress');
    expect(unknown.headers['accept-encoding']).toBe('gzip, deflate, br');
    const corrupt = await hook({ path: '/hook/p', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: Buffer.from(text) });
    expect(corrupt.status).toBe(400);
    expect(corrupt.json.error).toBe('INVALID_BODY');
    expect(corrupt.json.message).toMatch(/gzip: /);
    const gz = gzipSync(text);
    const truncated = await hook({ path: '/hook/p', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gz.subarray(0, gz.length - 12) });
    expect(truncated.status).toBe(400);
    expect(truncated.json.message).toMatch(/gzip: /);
    // Bytes after the end of the compressed stream (deflate and br would drop them silently).
    for (const [coding, bytes] of [['deflate', deflateSync(text)], ['br', brotliCompressSync(text)], ['gzip', gzipSync(text)]] as const) {
      const junk = await hook({ path: '/hook/p', headers: { 'content-type': 'application/json', 'content-encoding': coding }, body: Buffer.concat([bytes, Buffer.alloc(200_000, 0x41)]) });
      expect(junk.status, coding).toBe(400);
      expect(junk.json.message, coding).toMatch(new RegExp(`${coding}: `));
    }
    // Zero bytes after a gzip stream are padding node's gunzip always took: still fine.
    const padded = await hook({ path: '/hook/p', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: Buffer.concat([gzipSync(text), Buffer.alloc(4)]) });
    expect(padded.status).toBe(200);
    // A chain is named once per failure; more than two codings are refused before any is set up.
    const chain = await hook({ path: '/hook/p', headers: { 'content-type': 'application/json', 'content-encoding': 'br, br' }, body: Buffer.from('nope') });
    expect(chain.status).toBe(400);
    expect(chain.json.message).not.toMatch(/br: br:/);
    const many = await hook({ path: '/hook/p', headers: { 'content-type': 'application/json', 'content-encoding': Array(3000).fill('br').join(',') }, body: brotliCompressSync(text) });
    expect(many.status).toBe(415);
    expect(many.json.message).toMatch(/at most 2 content codings/);
    // Decoded but not JSON: the parser's own 400.
    const notJson = await hook({ path: '/hook/p', headers: { 'content-type': 'application/json', 'content-encoding': 'br' }, body: brotliCompressSync('{nope') });
    expect(notJson.status).toBe(400);
    expect(notJson.json.message).toMatch(/json/i);
  });

  it('the limit counts decoded bytes: a small gzip that inflates past PAYLOAD_SIZE_LIMIT → 413, the connection still answers', async () => {
    const bomb = gzipSync(Buffer.alloc(64 * MiB, 0x20));
    expect(bomb.length).toBeLessThan(MiB / 4);
    const started = Date.now();
    const res = await hook({ path: '/hook/p', headers: { 'content-type': 'text/plain', 'content-encoding': 'gzip' }, body: bomb });
    expect(res.status).toBe(413);
    expect(res.json.error).toBe('PAYLOAD_TOO_LARGE');
    expect(Date.now() - started).toBeLessThan(5_000);
    // Files too: ATTACHMENT_SIZE_LIMIT counts decoded bytes; the partial file is removed.
    const before = attachmentFiles(h);
    const big = await hook({ path: '/hook/p', headers: { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' }, body: bomb });
    expect(big.status).toBe(413);
    expect(attachmentFiles(h)).toEqual(before);
    const small = Buffer.from(randomBytes(100_000));
    const m = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' }, body: gzipSync(small) }));
    expect(m.rawAttachment).toMatchObject({ size: small.length, sha256: sha256(small) });
  });

  it('signatures are checked over the decoded bytes, which the sender signed before compressing', async () => {
    const sig = createHmac('sha256', hmacSecret).update(text).digest('hex');
    const ok = await hook({ path: '/hook/p-hmac', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', 'x-sig': sig }, body: gzipSync(text) });
    expect(ok.status, ok.body.toString()).toBe(200);
    const overCompressed = createHmac('sha256', hmacSecret).update(gzipSync(text)).digest('hex');
    const refused = await hook({ path: '/hook/p-hmac', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', 'x-sig': overCompressed }, body: gzipSync(text) });
    expect(refused.status).toBe(403);
  });

  it('a sender that aborts a compressed upload mid-body leaves nothing behind and hookd keeps answering', async () => {
    const u = new URL(h.url);
    const before = attachmentFiles(h);
    const payload = gzipSync(randomBytes(3 * MiB));
    await new Promise<void>((resolve) => {
      const req = http.request({ host: u.hostname, port: u.port, method: 'POST', path: '/hook/p', agent: false, headers: { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip', 'content-length': String(payload.length) } });
      req.on('error', () => resolve());
      req.write(payload.subarray(0, MiB), () => setTimeout(() => {
        req.destroy();
        resolve();
      }, 200));
    });
    await waitFor(() => attachmentFiles(h).length === before.length, 5_000);
    const next = await hook({ path: '/hook/p', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync(text) });
    expect(next.status).toBe(200);
  });
});

describe('limits mid-stream', () => {
  it('a multipart upload past ATTACHMENT_SIZE_LIMIT → 413 while streaming; every file it wrote is removed', async () => {
    const before = attachmentFiles(h);
    const boundary = `b${rnd()}`;
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="a"; filename="1.bin"\r\nContent-Type: application/octet-stream\r\n\r\n${'y'.repeat(3 * MiB)}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="b"; filename="2.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
    const r = await streamUntilAnswered(h.url, { path: '/hook/p', headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, head, max: 64 * MiB });
    expect(r.status).toBe(413);
    expect(r.headers.connection).toBe('close');
    expect(r.sentWhenAnswered).toBeLessThan(24 * MiB);
    await r.closed;
    expect(attachmentFiles(h)).toEqual(before);
  });
});

describe('CloudEvents', () => {
  it('structured mode: body as sent, cloudEvent normalized', async () => {
    const event = { specversion: '1.0', id: 'A234', source: '/my/source', type: 'com.example.created', subject: '123', traceparent: '00-ab', data: { n: 1 } };
    const m = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(event) }));
    expect(m.body).toEqual(event);
    expect(m.cloudEvent).toEqual({ specversion: '1.0', id: 'A234', source: '/my/source', type: 'com.example.created', subject: '123', extensions: { traceparent: '00-ab' }, data: { n: 1 } });
  });

  it('binary mode: ce-* headers are the attributes, the parsed body the data; binary data goes to the store', async () => {
    const headers = { 'ce-specversion': '1.0', 'ce-id': 'b-1', 'ce-source': '/src', 'ce-type': 't.x', 'ce-subject': 'caf%C3%A9', 'ce-traceparent': '00-cd' };
    const m = await accepted(await hook({ path: '/hook/p', headers: { ...headers, 'content-type': 'application/json' }, body: '{"n":2}' }));
    expect(m.body).toEqual({ n: 2 });
    expect(m.cloudEvent).toEqual({
      specversion: '1.0',
      id: 'b-1',
      source: '/src',
      type: 't.x',
      subject: 'café',
      datacontenttype: 'application/json',
      extensions: { traceparent: '00-cd' },
      data: { n: 2 },
    });
    const bytes = randomBytes(1000);
    const bin = await accepted(await hook({ path: '/hook/p', headers: { ...headers, 'content-type': 'application/octet-stream' }, body: bytes }));
    expect(bin.cloudEvent).toMatchObject({ id: 'b-1', datacontenttype: 'application/octet-stream', data: null });
    expect(bin.attachments[0]).toMatchObject({ size: 1000, sha256: sha256(bytes) });
    const missing = await hook({ path: '/hook/p', headers: { 'ce-specversion': '1.0', 'ce-source': '/s', 'ce-type': 't', 'content-type': 'application/json' }, body: '{}' });
    expect(missing.status).toBe(400);
    expect(missing.json.message).toMatch(/no id/);
  });

  it('batch mode: cloudEvents lists the normalized events', async () => {
    const batch = [
      { specversion: '1.0', id: '1', source: '/s', type: 'a', data: 1 },
      { specversion: '1.0', id: '2', source: '/s', type: 'b', data_base64: 'AAE=' },
    ];
    const m = await accepted(await hook({ path: '/hook/p', headers: { 'content-type': 'application/cloudevents-batch+json' }, body: JSON.stringify(batch) }));
    expect(m.body).toEqual(batch);
    expect(m.cloudEvents).toEqual([
      { specversion: '1.0', id: '1', source: '/s', type: 'a', data: 1 },
      { specversion: '1.0', id: '2', source: '/s', type: 'b', data_base64: 'AAE=' },
    ]);
  });
});

describe('authentication and files', () => {
  const big = () => {
    const form = new FormData();
    form.append('event', 'upload');
    form.append('file', new Blob([randomBytes(300_000)], { type: 'application/pdf' }), 'a.pdf');
    form.append('file', new Blob([randomBytes(1000)], { type: 'image/png' }), 'b.png');
    return encodeForm(form);
  };

  it('a signed multipart request (HMAC over the raw bytes) verifies; the raw route gives those bytes', async () => {
    const { bytes, contentType } = await big();
    const sig = createHmac('sha256', hmacSecret).update(bytes).digest('hex');
    const m = await accepted(await hook({ path: '/hook/p-hmac', headers: { 'content-type': contentType, 'x-sig': sig }, body: bytes }));
    expect(m.attachments).toHaveLength(2);
    expect(m.rawAttachment.sha256).toBe(sha256(bytes));
    const raw = await download(`/api/requests/${m.id}/raw`);
    expect(createHmac('sha256', hmacSecret).update(raw.body).digest('hex')).toBe(sig);
  });

  it('a request refused by its signature or token leaves no file', async () => {
    const before = attachmentFiles(h);
    const { bytes, contentType } = await big();
    const forged = await hook({ path: '/hook/p-hmac', headers: { 'content-type': contentType, 'x-sig': createHmac('sha256', 'wrong').update(bytes).digest('hex') }, body: bytes });
    expect(forged.status).toBe(403);
    const bin = await hook({ path: '/hook/p-hmac', headers: { 'content-type': 'application/octet-stream', 'x-sig': 'ab'.repeat(32) }, body: randomBytes(50_000) });
    expect(bin.status).toBe(403);
    // token: the body may carry it, so the body is read first — and its files are dropped on refusal.
    const noToken = await hook({ path: '/hook/p-token', headers: { 'content-type': contentType }, body: bytes });
    expect(noToken.status).toBe(401);
    expect(attachmentFiles(h)).toEqual(before);
    expect((await h.api('GET', '/api/requests?flowId=p-hmac&limit=100')).body.items.every((r: any) => r.rawAttachment?.sha256 !== sha256(bytes))).toBe(true);
  });

  it('a token in a large multipart form: fields redacted, the raw bytes holding it are not kept', async () => {
    const form = new FormData();
    form.append('token', token);
    form.append('file', new Blob([randomBytes(300_000)]), 'a.bin');
    const { bytes, contentType } = await encodeForm(form);
    const m = await accepted(await hook({ path: '/hook/p-token', headers: { 'content-type': contentType }, body: bytes }));
    expect(m.body).toEqual({ token: '[redacted]' });
    expect(m.rawAttachment).toBeUndefined();
    expect(m.rawBody).toBe('');
    expect(m.attachments).toHaveLength(1);
    expect((await download(`/api/requests/${m.id}/raw`)).body.length).toBe(0);
    // Only the file part is left on disk for this request: no copy of the token anywhere.
    for (const f of attachmentFiles(h)) {
      if (f.endsWith('.json')) continue;
      const { readFileSync } = await import('node:fs');
      expect(readFileSync(path.join(h.config.dataDir, 'attachments', f)).includes(Buffer.from(token))).toBe(false);
    }
  });

  it('a repeated x-request-id stores the files once', async () => {
    const id = `dup-${rnd()}`;
    const before = attachmentFiles(h);
    const first = await hook({ path: '/hook/p', headers: { 'content-type': 'application/octet-stream', 'x-request-id': id }, body: randomBytes(1000) });
    const again = await hook({ path: '/hook/p', headers: { 'content-type': 'application/octet-stream', 'x-request-id': id }, body: randomBytes(1000) });
    expect([first.status, again.status]).toEqual([200, 200]);
    // One attachment: its bytes and its metadata.
    expect(attachmentFiles(h).length - before.length).toBe(2);
  });
});

describe('payloadType', () => {
  it('base64: {origin} is the exact bytes; for bytes in the store {origin: null, originAttachment}', async () => {
    const body = '{ "a": 1,\r\n "b": "ü" }';
    const m = await accepted(await hook({ path: '/hook/p-b64', headers: { 'content-type': 'application/json' }, body }));
    expect(m.body).toEqual({ origin: Buffer.from(body).toString('base64') });
    expect(Buffer.from(m.rawBody, 'base64').toString()).toBe(body);
    const bin = await accepted(await hook({ path: '/hook/p-b64', headers: { 'content-type': 'image/png' }, body: randomBytes(100) }));
    expect(bin.body).toEqual({ origin: null, originAttachment: bin.rawAttachment.id });
  });

  it('ignore: body null, the request still stored whole', async () => {
    const m = await accepted(await hook({ path: '/hook/p-ignore', headers: { 'content-type': 'application/json' }, body: '{"a":1}' }));
    expect(m.body).toBeNull();
    expect(Buffer.from(m.rawBody, 'base64').toString()).toBe('{"a":1}');
  });

  it('an unknown payloadType is refused when the flow is defined', async () => {
    const res = await h.api('POST', '/api/flows', { id: `bad-${rnd()}`, trigger: { type: 'webhook', payloadType: 'hex' } });
    expect(res.status).toBe(400);
  });
});

// ---------------------------------------------------------------------------------------------
// A second hookd with workers: what flows see, http forwarding, retention and the sweep.

describe('with workers', () => {
  let w: RunningHookd;
  let receiver: http.Server;
  let receiverUrl: string;
  const received: Array<{ url: string; headers: http.IncomingHttpHeaders; body: Buffer }> = [];

  beforeAll(async () => {
    w = await startHookd({ ATTACHMENT_SIZE_LIMIT: '8mb', RETENTION: '1h' });
    receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
        setTimeout(
          () => {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end('{"ok":true}');
          },
          req.url === '/slow' ? 400 : 0,
        );
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await w.close();
    await new Promise((r) => receiver.close(r));
  });

  const finished = (requestId: string) =>
    waitFor(async () => {
      const list = await w.api('GET', `/api/executions?limit=1000`);
      const e = list.body.items.find((x: any) => x.requestId === requestId);
      return e && ['completed', 'dead', 'filtered'].includes(e.status) ? e : undefined;
    });

  it('steps see rawAttachment, cloudEvent and the payloadType body', async () => {
    const { flow: mk, hook: send2 } = bind(w);
    await mk('w-view', { payloadType: 'base64' }, { steps: [{ type: 'transform', expression: '{"body": body, "raw": rawAttachment.size, "ce": cloudEvent.type}' }] });
    const bytes = randomBytes(500);
    const headers = { 'content-type': 'application/octet-stream', 'ce-specversion': '1.0', 'ce-id': '1', 'ce-source': '/s', 'ce-type': 'seen' };
    const res = await send2({ path: '/hook/w-view', headers, body: bytes });
    expect(res.status).toBe(200);
    const e = await finished(res.json.requestId);
    expect(e.status).toBe('completed');
    const m = (await w.api('GET', `/api/requests/${res.json.requestId}`)).body;
    expect(JSON.parse(e.steps[0].output)).toEqual({ body: { origin: null, originAttachment: m.rawAttachment.id }, raw: 500, ce: 'seen' });
  });

  it('an http step forwards the raw body, one field\'s file, or every file as multipart', async () => {
    const { flow: mk, hook: send2 } = bind(w);
    await mk('w-fwd', {}, {
      steps: [
        { id: 'raw', type: 'http', url: `${receiverUrl}/raw`, forwardAttachment: 'raw' },
        { id: 'field', type: 'http', url: `${receiverUrl}/field`, method: 'PUT', forwardAttachment: { field: 'doc' } },
        { id: 'multi', type: 'http', url: `${receiverUrl}/multi`, forwardAttachment: 'multipart', body: '{"note": "fwd", "n": 2}' },
      ],
    });
    const doc = randomBytes(400_000);
    const img = randomBytes(2000);
    const form = new FormData();
    form.append('event', 'x');
    form.append('doc', new Blob([doc], { type: 'application/pdf' }), 'Zählung.pdf');
    form.append('img', new Blob([img], { type: 'image/png' }), 'i.png');
    const { bytes, contentType } = await encodeForm(form);
    received.length = 0;
    const res = await send2({ path: '/hook/w-fwd', headers: { 'content-type': contentType }, body: bytes });
    expect(res.status).toBe(200);
    const e = await finished(res.json.requestId);
    expect(e.status, JSON.stringify(e)).toBe('completed');
    expect(received).toHaveLength(3);
    const [raw, field, multi] = received as [(typeof received)[0], (typeof received)[0], (typeof received)[0]];
    expect(raw.body.equals(bytes)).toBe(true);
    expect(raw.headers['content-type']).toBe(contentType);
    expect(raw.headers['content-length']).toBe(String(bytes.length));
    expect(field.body.equals(doc)).toBe(true);
    expect(field.headers['content-type']).toBe('application/pdf');
    expect(field.headers['content-disposition']).toContain(`filename*=UTF-8''Z%C3%A4hlung.pdf`);
    expect(field.headers['idempotency-key']).toBe(`${res.json.requestId}:field`);
    const parsed = await new Request('http://x.invalid/', { method: 'POST', headers: { 'content-type': multi.headers['content-type']! }, body: multi.body }).formData();
    expect(parsed.get('note')).toBe('fwd');
    expect(parsed.get('n')).toBe('2');
    const d = parsed.get('doc') as File;
    expect(d.name).toBe('Zählung.pdf');
    expect(d.type).toBe('application/pdf');
    expect(Buffer.from(await d.arrayBuffer()).equals(doc)).toBe(true);
    expect(Buffer.from(await (parsed.get('img') as File).arrayBuffer()).equals(img)).toBe(true);
    expect(multi.headers['content-length']).toBe(String(multi.body.length));
  });

  it('forwarding a file that is gone fails the step without retry', async () => {
    const { flow: mk, hook: send2 } = bind(w);
    // The first call is slow: the file is deleted meanwhile, before the forwarding step runs.
    await mk('w-gone', {}, {
      retry: { maxAttempts: 5, backoffMs: 10 },
      steps: [
        { id: 'slow', type: 'http', url: `${receiverUrl}/slow` },
        { id: 'fwd', type: 'http', url: `${receiverUrl}/gone`, forwardAttachment: 'raw' },
      ],
    });
    const res = await send2({ path: '/hook/w-gone', headers: { 'content-type': 'application/octet-stream' }, body: randomBytes(100) });
    expect(res.status).toBe(200);
    const m = (await w.api('GET', `/api/requests/${res.json.requestId}`)).body;
    expect(await w.app.attachments.delete([m.rawAttachment.id])).toBe(1);
    const e = await finished(res.json.requestId);
    expect(e.status).toBe('dead');
    expect(e.attempts).toBe(1);
    expect(e.error).toMatch(/attachment .* is gone/);
    expect(received.some((r) => r.url === '/gone')).toBe(false);
  });

  it('the retention purge removes old requests, their executions and their files; newer ones stay', async () => {
    const { flow: mk, hook: send2 } = bind(w);
    await mk('w-ret');
    const form = new FormData();
    form.append('file', new Blob([randomBytes(300_000)]), 'a.bin');
    const { bytes, contentType } = await encodeForm(form);
    const old = await send2({ path: '/hook/w-ret', headers: { 'content-type': contentType }, body: bytes });
    const oldBin = await send2({ path: '/hook/w-ret', headers: { 'content-type': 'application/octet-stream' }, body: randomBytes(1000) });
    const oldJson = await send2({ path: '/hook/w-ret', headers: { 'content-type': 'application/json' }, body: '{}' });
    for (const r of [old, oldBin, oldJson]) expect(r.status).toBe(200);
    for (const r of [old, oldBin, oldJson]) await finished(r.json.requestId);
    const oldFiles = [
      ...(await w.api('GET', `/api/requests/${old.json.requestId}`)).body.attachments,
      (await w.api('GET', `/api/requests/${old.json.requestId}`)).body.rawAttachment,
      ...(await w.api('GET', `/api/requests/${oldBin.json.requestId}`)).body.attachments,
    ].map((a: any) => a.id);
    expect(oldFiles).toHaveLength(3);
    await new Promise((r) => setTimeout(r, 20));
    const cutoff = Date.now();
    await new Promise((r) => setTimeout(r, 20));
    const fresh = await send2({ path: '/hook/w-ret', headers: { 'content-type': 'application/octet-stream' }, body: randomBytes(1000) });
    await finished(fresh.json.requestId);
    const freshFile = (await w.api('GET', `/api/requests/${fresh.json.requestId}`)).body.rawAttachment.id;

    // RETENTION=1h: a purge at cutoff + 1h takes everything received before cutoff.
    const report = await w.app.housekeeping.purge(cutoff + 3_600_000);
    expect(report.requests).toBeGreaterThanOrEqual(3);
    expect(report.files).toBeGreaterThanOrEqual(3);
    for (const r of [old, oldBin, oldJson]) {
      expect((await w.api('GET', `/api/requests/${r.json.requestId}`)).status).toBe(404);
      expect((await w.api('GET', `/api/executions?flowId=w-ret&limit=100`)).body.items.some((e: any) => e.requestId === r.json.requestId)).toBe(false);
    }
    const files = attachmentFiles(w).join('\n');
    for (const id of oldFiles) expect(files).not.toContain(id);
    expect(files).toContain(freshFile);
    expect((await w.api('GET', `/api/requests/${fresh.json.requestId}`)).status).toBe(200);
  });

  it('the sweep removes files no request references, keeps referenced ones', async () => {
    const writer = await w.app.attachments.create({ contentType: 'text/plain' });
    await writer.write(Buffer.from('orphan: its request never committed'));
    const orphan = await writer.finish();
    const { hook: send2 } = bind(w);
    const kept = await send2({ path: '/hook/w-ret', headers: { 'content-type': 'application/octet-stream' }, body: randomBytes(10) });
    const keptId = (await w.api('GET', `/api/requests/${kept.json.requestId}`)).body.rawAttachment.id;
    expect(attachmentFiles(w).join('\n')).toContain(orphan.id);
    // Not yet an hour old: the default sweep leaves it (its request could still be committing).
    await w.app.housekeeping.sweep();
    expect(attachmentFiles(w).join('\n')).toContain(orphan.id);
    const result = await w.app.housekeeping.sweep(0);
    expect(result.removed).toBeGreaterThanOrEqual(1);
    const files = attachmentFiles(w).join('\n');
    expect(files).not.toContain(orphan.id);
    expect(files).toContain(keptId);
  });
});
