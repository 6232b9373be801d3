import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ParserServer, post, readAll, sha256, startParserServer } from './parsers-harness.js';

let srv: ParserServer;
beforeAll(async () => {
  srv = await startParserServer({ payloadSizeLimit: 64 * 1024 });
});
afterAll(() => srv.close());

const event = {
  specversion: '1.0',
  id: 'A234-1234-1234',
  source: 'https://github.com/cloudevents/spec/pull',
  type: 'com.github.pull_request.opened',
  subject: '123',
  time: '2018-04-05T17:31:00Z',
  datacontenttype: 'application/json',
  dataschema: 'https://example.com/schema',
  comexampleextension1: 'value',
  data: { number: 123, title: 'Fix' },
};

describe('CloudEvents structured mode (application/cloudevents+json)', () => {
  it('the body is the event; cloudEvent holds its attributes, extensions and data', async () => {
    const res = await post(srv.url, { 'content-type': 'application/cloudevents+json; charset=utf-8' }, JSON.stringify(event));
    expect(res.status).toBe(200);
    expect(res.body.body).toEqual(event);
    expect(res.body.cloudEvent).toEqual({
      specversion: '1.0',
      id: 'A234-1234-1234',
      source: 'https://github.com/cloudevents/spec/pull',
      type: 'com.github.pull_request.opened',
      subject: '123',
      time: '2018-04-05T17:31:00Z',
      datacontenttype: 'application/json',
      dataschema: 'https://example.com/schema',
      extensions: { comexampleextension1: 'value' },
      data: { number: 123, title: 'Fix' },
    });
  });

  it('keeps data_base64 as sent', async () => {
    const res = await post(srv.url, { 'content-type': 'application/cloudevents+json' }, JSON.stringify({ ...event, data: undefined, data_base64: 'AAEC' }));
    expect(res.body.cloudEvent.data_base64).toBe('AAEC');
    expect(res.body.cloudEvent.data).toBeUndefined();
  });

  it('missing required attributes, a non-object or invalid JSON → 400', async () => {
    for (const missing of ['specversion', 'id', 'source', 'type']) {
      const res = await post(srv.url, { 'content-type': 'application/cloudevents+json' }, JSON.stringify({ ...event, [missing]: undefined }));
      expect(res.status).toBe(400);
      expect(res.body.message).toContain(missing);
    }
    expect((await post(srv.url, { 'content-type': 'application/cloudevents+json' }, '[1]')).status).toBe(400);
    expect((await post(srv.url, { 'content-type': 'application/cloudevents+json' }, '{"id":')).status).toBe(400);
    expect((await post(srv.url, { 'content-type': 'application/cloudevents+json' }, JSON.stringify({ ...event, time: 5 }))).status).toBe(400);
  });

  it('structured mode wins over ce-* headers', async () => {
    const res = await post(srv.url, { 'content-type': 'application/cloudevents+json', 'ce-specversion': '1.0', 'ce-id': 'header' }, JSON.stringify(event));
    expect(res.body.cloudEvent.id).toBe('A234-1234-1234');
  });
});

describe('CloudEvents batch mode (application/cloudevents-batch+json)', () => {
  it('the body is the array; cloudEvents the normalized events', async () => {
    const batch = [event, { ...event, id: 'second', data: 'text' }];
    const res = await post(srv.url, { 'content-type': 'application/cloudevents-batch+json' }, JSON.stringify(batch));
    expect(res.status).toBe(200);
    expect(res.body.body).toEqual(batch);
    expect(res.body.cloudEvents.map((e: { id: string; data: unknown }) => [e.id, e.data])).toEqual([
      ['A234-1234-1234', { number: 123, title: 'Fix' }],
      ['second', 'text'],
    ]);
    expect((await post(srv.url, { 'content-type': 'application/cloudevents-batch+json' }, '[]')).body.cloudEvents).toEqual([]);
  });

  it('a batch that is not an array, or with an invalid event → 400', async () => {
    expect((await post(srv.url, { 'content-type': 'application/cloudevents-batch+json' }, JSON.stringify(event))).status).toBe(400);
    const res = await post(srv.url, { 'content-type': 'application/cloudevents-batch+json' }, JSON.stringify([event, { id: 'x' }]));
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/event 1/);
  });
});

describe('CloudEvents binary mode (ce-* headers, any content type)', () => {
  const headers = {
    'ce-specversion': '1.0',
    'ce-id': 'b-1',
    'ce-source': '/my/source',
    'ce-type': 'com.example.thing.created',
    'ce-subject': 'caf%C3%A9',
    'ce-time': '2024-01-01T00:00:00Z',
    'ce-traceparent': '00-abc-def-01',
  };

  it('JSON data: the body is the data, cloudEvent the headers + Content-Type + data', async () => {
    const res = await post(srv.url, { ...headers, 'content-type': 'application/json' }, '{"n":1}');
    expect(res.status).toBe(200);
    expect(res.body.body).toEqual({ n: 1 });
    expect(res.body.cloudEvent).toEqual({
      specversion: '1.0',
      id: 'b-1',
      source: '/my/source',
      type: 'com.example.thing.created',
      subject: 'café',
      time: '2024-01-01T00:00:00Z',
      datacontenttype: 'application/json',
      extensions: { traceparent: '00-abc-def-01' },
      data: { n: 1 },
    });
  });

  it('XML and text data are parsed by their type', async () => {
    const xml = await post(srv.url, { ...headers, 'content-type': 'application/xml' }, '<a>1</a>');
    expect(xml.body.cloudEvent.data).toEqual({ a: '1' });
    const text = await post(srv.url, { ...headers, 'content-type': 'text/plain' }, 'hi');
    expect(text.body.cloudEvent.data).toBe('hi');
  });

  it('binary data goes to the attachment store (data null, the bytes in attachments[0])', async () => {
    const bytes = Buffer.from([1, 2, 3, 4]);
    const res = await post(srv.url, { ...headers, 'content-type': 'application/octet-stream' }, bytes);
    expect(res.status).toBe(200);
    expect(res.body.cloudEvent).toMatchObject({ id: 'b-1', datacontenttype: 'application/octet-stream', data: null });
    expect(res.body.attachments[0]).toMatchObject({ size: 4, sha256: sha256(bytes) });
    expect((await readAll((await srv.store.open(res.body.attachments[0].id))!.stream)).equals(bytes)).toBe(true);
  });

  it('a missing required ce- header → 400 before the body is read', async () => {
    const { 'ce-source': _, ...rest } = headers;
    const res = await post(srv.url, { ...rest, 'content-type': 'application/octet-stream' }, Buffer.alloc(10));
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/source/);
    // Nothing was streamed to the parser: onChunk never ran.
    expect(srv.last()).toMatchObject({ ok: false, status: 400 });
  });

  it('no ce-specversion header: not a CloudEvent', async () => {
    const res = await post(srv.url, { 'content-type': 'application/json', 'ce-id': 'x' }, '{}');
    expect(res.body.cloudEvent).toBeUndefined();
  });
});
