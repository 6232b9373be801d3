import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeForm, type ParserServer, post, readAll, sha256, startParserServer } from './parsers-harness.js';

/**
 * For every payload type: onChunk sees exactly the bytes sent, in order (the HMAC verifiers hash
 * there), and those bytes are kept — in rawBody, or in the store as rawAttachment.
 */
let srv: ParserServer;
beforeAll(async () => {
  srv = await startParserServer({ payloadSizeLimit: 256 * 1024 });
});
afterAll(() => srv.close());

async function multipartCase(fileSize: number): Promise<[string, Buffer]> {
  const fd = new FormData();
  fd.append('a', 'ü');
  fd.append('file', new Blob([Buffer.alloc(fileSize, 0xab)]), 'f.bin');
  fd.append('file', new Blob(['second']), 'g.txt');
  const { body, contentType } = await encodeForm(fd);
  return [contentType, body];
}

describe('raw bytes: onChunk and storage are exact for every type', () => {
  const cases: Array<[string, () => Promise<[string, Buffer]> | [string, Buffer]]> = [
    ['json', () => ['application/json', Buffer.from(JSON.stringify({ a: 'ü', n: [1, 2, 3] }))]],
    ['json (weird spacing kept)', () => ['application/json', Buffer.from('{ "a" :1 ,\n"b":  2 }')]],
    ['text', () => ['text/plain; charset=iso-8859-1', Buffer.from([0x63, 0x61, 0x66, 0xe9])]],
    ['xml', () => ['application/xml', Buffer.from('<?xml version="1.0"?>\n<a  x="1" >  text </a>')]],
    ['form', () => ['application/x-www-form-urlencoded', Buffer.from('a=1&b=%C3%BC&b=x+y')]],
    ['multipart (in memory)', () => multipartCase(10_000)],
    ['multipart (spilled to the store)', () => multipartCase(600_000)],
    ['binary', () => ['application/octet-stream', Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31) & 0xff))]],
    ['cloudevents', () => ['application/cloudevents+json', Buffer.from(JSON.stringify({ specversion: '1.0', id: '1', source: 's', type: 't', data: 1 }))]],
  ];
  for (const [name, make] of cases) {
    it(name, async () => {
      const [type, body] = await make();
      // Sent in uneven slices so the parser sees several chunks.
      async function* slices() {
        for (let i = 0; i < body.length; i += 7919) {
          yield body.subarray(i, i + 7919);
          await new Promise((r) => setImmediate(r));
        }
      }
      const res = await post(srv.url, { 'content-type': type }, slices());
      expect(res.status).toBe(200);
      const last = srv.last();
      expect(last).toMatchObject({ ok: true, chunks: { size: body.length, sha256: sha256(body) } });
      if (res.body.rawAttachment) {
        expect(res.body.rawBody).toBe('');
        expect(res.body.rawAttachment).toMatchObject({ size: body.length, sha256: sha256(body) });
        const stored = await readAll((await srv.store.open(res.body.rawAttachment.id))!.stream);
        expect(stored.equals(body)).toBe(true);
      } else {
        expect(Buffer.from(res.body.rawBody, 'base64').equals(body)).toBe(true);
      }
    });
  }
});
