import { createHash } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AttachmentRef } from '../../src/core/message.js';
import { DEFAULT_PARSERS, maxBodyBytes, parserFor } from '../../src/ingress/parsers/index.js';
import { parseMediaType } from '../../src/ingress/parsers/media-type.js';
import { filesUnder, generated, type ParserServer, post, readAll, sha256, startParserServer } from './parsers-harness.js';

let srv: ParserServer;
let noStore: ParserServer;
beforeAll(async () => {
  srv = await startParserServer({ payloadSizeLimit: 1024 * 1024, attachmentSizeLimit: 64 * 1024 * 1024 });
  noStore = await startParserServer({ store: false, payloadSizeLimit: 1024 });
});
afterAll(async () => {
  await srv.close();
  await noStore.close();
});

describe('binary and unknown types → one attachment', () => {
  for (const type of ['application/octet-stream', 'application/pdf', 'image/png', 'application/x-never-heard-of', 'video/mp4; codecs="avc1"']) {
    it(`${type}: body null, the bytes are attachments[0] = rawAttachment`, async () => {
      const bytes = Buffer.from([0, 1, 2, 255, 254, 0x25, 0x50, 0x44, 0x46]);
      const res = await post(srv.url, { 'content-type': type }, bytes);
      expect(res.status).toBe(200);
      expect(res.body.body).toBeNull();
      expect(res.body.rawBody).toBe('');
      expect(res.body.attachments).toHaveLength(1);
      const ref = res.body.attachments[0] as AttachmentRef;
      expect(ref).toMatchObject({ contentType: type, size: bytes.length, sha256: sha256(bytes) });
      expect(res.body.rawAttachment).toEqual(ref);
      expect((await readAll((await srv.store.open(ref.id))!.stream)).equals(bytes)).toBe(true);
    });
  }

  it('takes the filename from Content-Disposition', async () => {
    const res = await post(srv.url, { 'content-type': 'application/pdf', 'content-disposition': 'attachment; filename="../invoice 42.pdf"' }, '%PDF');
    expect(res.body.attachments[0].filename).toBe('invoice 42.pdf');
    const utf8 = await post(srv.url, { 'content-type': 'application/pdf', 'content-disposition': "attachment; filename=\"x.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9.pdf" }, '%PDF');
    expect(utf8.body.attachments[0].filename).toBe('Résumé.pdf');
  });

  it('an empty body gives no attachment', async () => {
    const res = await post(srv.url, { 'content-type': 'application/octet-stream' }, Buffer.alloc(0));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ body: null, rawBody: '' });
    expect(res.body.attachments).toBeUndefined();
  });

  it('over ATTACHMENT_SIZE_LIMIT → 413 mid-stream, the partial file removed', async () => {
    const before = filesUnder(srv.dir).length;
    const res = await post(srv.url, { 'content-type': 'application/octet-stream' }, generated(80 * 1024 * 1024));
    expect(res.status).toBe(413);
    expect(filesUnder(srv.dir).length).toBe(before);
    expect(filesUnder(srv.dir).filter((f) => f.endsWith('.part'))).toEqual([]);
  });

  it('the largest accepted body is ATTACHMENT_SIZE_LIMIT (for an early 413 on Content-Length)', () => {
    const parser = parserFor(parseMediaType('application/pdf'), DEFAULT_PARSERS);
    expect(maxBodyBytes(parser, { payloadSizeLimit: 10, attachmentSizeLimit: 500, attachments: srv.store })).toBe(500);
    expect(maxBodyBytes(parser, { payloadSizeLimit: 10 })).toBe(10);
    const json = parserFor(parseMediaType('application/json'), DEFAULT_PARSERS);
    expect(maxBodyBytes(json, { payloadSizeLimit: 10, attachmentSizeLimit: 500 })).toBe(10);
  });

  it('a streamed 50 MB body keeps memory flat and its sha256 right', async () => {
    // Garbage (socket chunks not yet collected) inflates RSS for a while, so retention is checked
    // precisely: mid-upload, after a full GC, the Buffers still alive must be few.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    gc();
    const base = process.memoryUsage();
    let peakRss = base.rss;
    const timer = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 5);
    const total = 50 * 1024 * 1024;
    const expected = createHash('sha256');
    for (const c of generated(total)) expected.update(c);
    const liveAtCheckpoints: number[] = [];
    async function* body() {
      let sent = 0;
      for (const chunk of generated(total)) {
        sent += chunk.length;
        yield chunk;
        if (sent % (20 * 1024 * 1024) === 0) {
          await new Promise((r) => setTimeout(r, 50));
          // Twice, apart: V8 frees ArrayBuffer memory in a sweep that runs after the GC.
          gc();
          await new Promise((r) => setTimeout(r, 20));
          gc();
          liveAtCheckpoints.push(process.memoryUsage().arrayBuffers - base.arrayBuffers);
        }
      }
    }
    const res = await post(srv.url, { 'content-type': 'application/octet-stream' }, body());
    clearInterval(timer);
    expect(res.status).toBe(200);
    expect(res.body.attachments[0]).toMatchObject({ size: total, sha256: expected.digest('hex') });
    expect(liveAtCheckpoints).toHaveLength(2);
    // A body held in memory would be 20 and 40 MB here.
    for (const live of liveAtCheckpoints) expect(live / 1024 / 1024).toBeLessThan(4);
    expect((peakRss - base.rss) / 1024 / 1024).toBeLessThan(64);
  });

  it('without an attachment store the body stays in memory as rawBody (up to PAYLOAD_SIZE_LIMIT)', async () => {
    const bytes = Buffer.from([9, 8, 7]);
    const res = await post(noStore.url, { 'content-type': 'application/octet-stream' }, bytes);
    expect(res.body).toMatchObject({ body: null, rawBody: bytes.toString('base64') });
    expect((await post(noStore.url, { 'content-type': 'application/octet-stream' }, Buffer.alloc(2048))).status).toBe(413);
  });
});
