import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AttachmentRef } from '../../src/core/message.js';
import { filesUnder, encodeForm, generated, type ParserServer, post, readAll, sha256, startParserServer } from './parsers-harness.js';

let srv: ParserServer;
let small: ParserServer;
let noStore: ParserServer;
beforeAll(async () => {
  srv = await startParserServer({ payloadSizeLimit: 64 * 1024, attachmentSizeLimit: 4 * 1024 * 1024 });
  small = await startParserServer({ payloadSizeLimit: 64 * 1024, attachmentSizeLimit: 1024 * 1024 });
  noStore = await startParserServer({ store: false });
});
afterAll(async () => {
  await srv.close();
  await small.close();
  await noStore.close();
});

const B = 'XbOuNdArY42';
const CT = `multipart/form-data; boundary=${B}`;

/** A multipart body from parts, by hand (for exact bytes and malformed cases). */
function multipart(parts: Array<{ name: string; filename?: string; type?: string; data: Buffer | string }>, boundary = B): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"`;
    if (p.filename !== undefined) head += `; filename="${p.filename}"`;
    head += '\r\n';
    if (p.type) head += `Content-Type: ${p.type}\r\n`;
    chunks.push(Buffer.from(`${head}\r\n`), Buffer.from(p.data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

async function contentOf(server: ParserServer, ref: AttachmentRef): Promise<Buffer> {
  return readAll((await server.store.open(ref.id))!.stream);
}

describe('multipart/form-data', () => {
  it('fields into the body (repeated → arrays), every file part kept with name, type, size, sha256 (undici FormData)', async () => {
    const files = [
      Buffer.from('first file'),
      Buffer.alloc(300_000, 7),
      Buffer.from('%PDF-1.7 third'),
      Buffer.from('{"json":true}'),
    ];
    const fd = new FormData();
    fd.append('event', 'upload');
    fd.append('tag', 'a');
    fd.append('file', new Blob([files[0]!], { type: 'text/plain' }), 'one.txt');
    fd.append('tag', 'b');
    fd.append('file', new Blob([files[1]!], { type: 'application/octet-stream' }), 'two.bin');
    fd.append('file', new Blob([files[2]!], { type: 'application/pdf' }), 'three.pdf');
    fd.append('meta', new Blob([files[3]!], { type: 'application/json' }), 'meta.json');
    fd.append('note', 'ünïcode ✓');
    const res = await fetch(srv.url, { method: 'POST', body: fd });
    expect(res.status).toBe(200);
    const out = (await res.json()) as any;
    expect(out.body).toEqual({ event: 'upload', tag: ['a', 'b'], note: 'ünïcode ✓' });
    expect(out.attachments).toHaveLength(4);
    const expected = [
      { field: 'file', filename: 'one.txt', contentType: 'text/plain' },
      { field: 'file', filename: 'two.bin', contentType: 'application/octet-stream' },
      { field: 'file', filename: 'three.pdf', contentType: 'application/pdf' },
      { field: 'meta', filename: 'meta.json', contentType: 'application/json' },
    ];
    for (const [i, ref] of (out.attachments as AttachmentRef[]).entries()) {
      expect(ref).toMatchObject({ ...expected[i], size: files[i]!.length, sha256: sha256(files[i]!) });
      // (Buffer.equals: vitest's deep equality is slow on large buffers)
      expect((await contentOf(srv, ref)).equals(files[i]!)).toBe(true);
    }
    // Past min(256 KiB, PAYLOAD_SIZE_LIMIT) the raw bytes went to the store, exactly as onChunk saw them.
    const last = srv.last() as { chunks: { sha256: string; size: number } };
    expect(out.rawBody).toBe('');
    expect(out.rawAttachment).toMatchObject({ size: last.chunks.size, sha256: last.chunks.sha256 });
    expect(out.rawAttachment.contentType).toMatch(/^multipart\/form-data; boundary=/);
  });

  it('a raw body past 256 KiB goes to the store as rawAttachment (rawBody empty), byte-exact', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 1);
    const body = multipart([
      { name: 'a', data: 'x' },
      { name: 'file', filename: 'big.bin', type: 'application/octet-stream', data: big },
    ]);
    const res = await post(srv.url, { 'content-type': CT }, body);
    expect(res.status).toBe(200);
    expect(res.body.rawBody).toBe('');
    const raw = res.body.rawAttachment as AttachmentRef;
    expect(raw).toMatchObject({ contentType: CT, size: body.length, sha256: sha256(body) });
    expect((await contentOf(srv, raw)).equals(body)).toBe(true);
    expect(res.body.attachments[0]).toMatchObject({ size: big.length, sha256: sha256(big) });
    // And onChunk saw exactly those bytes.
    expect(srv.last()).toMatchObject({ ok: true, chunks: { size: body.length, sha256: sha256(body) } });
  });

  it('a part without filename is a field; an application/octet-stream part is a file; an empty file is kept', async () => {
    const body = multipart([
      { name: 'text', type: 'text/plain; charset=utf-8', data: 'hello' },
      { name: 'blob', type: 'application/octet-stream', data: Buffer.from([0, 1, 2]) },
      { name: 'none', filename: '', type: 'application/octet-stream', data: '' },
    ]);
    const res = await post(srv.url, { 'content-type': CT }, body);
    expect(res.status).toBe(200);
    expect(res.body.body).toEqual({ text: 'hello' });
    expect(res.body.attachments.map((a: AttachmentRef) => [a.field, a.size])).toEqual([
      ['blob', 3],
      ['none', 0],
    ]);
  });

  it('a filename with a path keeps only its last segment', async () => {
    const body = multipart([{ name: 'f', filename: '../../etc/passwd', type: 'text/plain', data: 'x' }]);
    const res = await post(srv.url, { 'content-type': CT }, body);
    expect(res.body.attachments[0].filename).toBe('passwd');
  });

  it('files over ATTACHMENT_SIZE_LIMIT → 413 while streaming, every file of the request removed', async () => {
    const before = filesUnder(small.dir).length;
    const head = Buffer.from(
      `--${B}\r\nContent-Disposition: form-data; name="ok"; filename="ok.txt"\r\nContent-Type: text/plain\r\n\r\nfine\r\n` +
        `--${B}\r\nContent-Disposition: form-data; name="file"; filename="huge.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
    async function* body() {
      yield head;
      // 64 MB announced by nothing (chunked): the server must stop at 1 MB, not read it all first.
      yield* generated(64 * 1024 * 1024);
    }
    const res = await post(small.url, { 'content-type': CT }, body()).catch((err: Error) => ({ status: -1, body: err.message }));
    const last = small.last()!;
    expect(last).toMatchObject({ ok: false, status: 413, code: 'PAYLOAD_TOO_LARGE' });
    if (res.status !== -1) expect(res.status).toBe(413);
    expect(filesUnder(small.dir).length).toBe(before);
    expect(filesUnder(small.dir)).toEqual([]);
  });

  it('several files that together pass the limit → 413, none kept', async () => {
    const part = Buffer.alloc(400 * 1024, 3);
    const body = multipart([1, 2, 3].map((i) => ({ name: 'file', filename: `${i}.bin`, type: 'application/octet-stream', data: part })));
    const res = await post(small.url, { 'content-type': CT }, body);
    expect(res.status).toBe(413);
    expect(filesUnder(small.dir)).toEqual([]);
  });

  it('text fields over PAYLOAD_SIZE_LIMIT → 413 (one big field, or many)', async () => {
    const one = await post(srv.url, { 'content-type': CT }, multipart([{ name: 'big', data: 'x'.repeat(65 * 1024) }]));
    expect(one.status).toBe(413);
    const many = await post(srv.url, { 'content-type': CT }, multipart(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, data: 'y'.repeat(4000) }))));
    expect(many.status).toBe(413);
  });

  describe('malformed multipart → 400, no file left', () => {
    const cases: Array<[string, string, Buffer]> = [
      ['no boundary parameter', 'multipart/form-data', multipart([{ name: 'a', data: 'b' }])],
      ['a boundary that is not in the body', 'multipart/form-data; boundary=other', multipart([{ name: 'f', filename: 'f.txt', data: 'data' }])],
      [
        'truncated in the middle of a file',
        CT,
        multipart([{ name: 'file', filename: 'cut.bin', type: 'application/octet-stream', data: Buffer.alloc(200_000, 9) }]).subarray(0, 150_000),
      ],
      ['ends right after a file part header', CT, Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\nabc`)],
      ['missing the closing boundary', CT, Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue\r\n`)],
      ['a malformed part header', CT, Buffer.from(`--${B}\r\nContent-Disposition form-data name\r\n\u0000\r\n\r\nx\r\n--${B}--\r\n`)],
      ['an empty body', CT, Buffer.alloc(0)],
    ];
    for (const [name, type, body] of cases) {
      it(name, async () => {
        const before = filesUnder(srv.dir).length;
        const res = await post(srv.url, { 'content-type': type }, body);
        expect(res.status).toBe(400);
        expect(res.body.code).toBe('INVALID_BODY');
        expect(res.body.message).toMatch(/^Invalid multipart body: /);
        expect(filesUnder(srv.dir).length).toBe(before);
        expect(filesUnder(srv.dir).filter((f) => f.endsWith('.part'))).toEqual([]);
      });
    }
  });

  it('a client that aborts mid-upload leaves no file', async () => {
    await small.store.sweep(async () => false, -1000); // start from an empty store
    small.reset();
    const head = Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n`);
    async function* body() {
      yield head;
      yield* generated(512 * 1024);
    }
    await post(small.url, { 'content-type': CT }, body(), { abortAfterBytes: 300 * 1024 });
    for (let i = 0; i < 50 && small.last() === undefined; i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 50));
    expect(small.last()).toMatchObject({ ok: false, status: 400 });
    expect(filesUnder(small.dir)).toEqual([]);
  });

  it('too many files → 400', async () => {
    const parts = Array.from({ length: 1001 }, (_, i) => ({ name: 'f', filename: `${i}`, data: '' }));
    const res = await post(srv.url, { 'content-type': CT }, multipart(parts));
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/more than 1000 files/);
  }, 60_000);

  it('without an attachment store multipart is refused with 415', async () => {
    const res = await post(noStore.url, { 'content-type': CT }, multipart([{ name: 'a', data: 'b' }]));
    expect(res.status).toBe(415);
  });

  it('onChunk sees exactly the bytes sent (FormData encoded by undici)', async () => {
    const fd = new FormData();
    fd.append('a', '1');
    fd.append('file', new Blob([Buffer.alloc(30_000, 5)]), 'x.bin');
    const { body, contentType } = await encodeForm(fd);
    const res = await post(srv.url, { 'content-type': contentType }, body);
    expect(res.status).toBe(200);
    expect(srv.last()).toMatchObject({ ok: true, chunks: { size: body.length, sha256: sha256(body) } });
    expect(Buffer.from(res.body.rawBody, 'base64').equals(body)).toBe(true);
  });
});
