import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseForm } from '../../src/ingress/parsers/form.js';
import { DEFAULT_PARSERS, parserFor } from '../../src/ingress/parsers/index.js';
import { parseMediaType } from '../../src/ingress/parsers/media-type.js';
import { type ParserServer, post, startParserServer } from './parsers-harness.js';

let srv: ParserServer;
beforeAll(async () => {
  srv = await startParserServer({ payloadSizeLimit: 64 * 1024 });
});
afterAll(() => srv.close());

const FORM = 'application/x-www-form-urlencoded';
const form = (s: string, params = '') => parseForm(Buffer.from(s, 'latin1'), parseMediaType(FORM + params));

describe('application/x-www-form-urlencoded', () => {
  it('is picked for its type', () => {
    expect(parserFor(parseMediaType(`${FORM}; charset=UTF-8`), DEFAULT_PARSERS).name).toBe('form');
  });

  it('→ an object over HTTP; repeated keys become arrays in order (undici URLSearchParams body)', async () => {
    const params = new URLSearchParams();
    params.append('event', 'order.created');
    params.append('tag', 'a');
    params.append('tag', 'b & c');
    params.append('tag', 'ü');
    params.append('empty', '');
    params.append('space key', '1+1=2');
    const res = await fetch(srv.url, { method: 'POST', body: params });
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).body).toEqual({ event: 'order.created', tag: ['a', 'b & c', 'ü'], empty: '', 'space key': '1+1=2' });
  });

  it('decodes + and %XX, keeps malformed escapes as written, takes keys without "="', () => {
    expect(form('a=1+2&b=%41%42&c=%zz%4&d&&e=')).toEqual({ a: '1 2', b: 'AB', c: '%zz%4', d: '', e: '' });
    expect(form('')).toEqual({});
    expect(form('a[b]=1&a[c]=2')).toEqual({ 'a[b]': '1', 'a[c]': '2' });
  });

  it('honours the charset parameter (UTF-8 by default)', async () => {
    expect(form('name=caf%C3%A9')).toEqual({ name: 'café' });
    expect(form('name=caf%E9', '; charset=iso-8859-1')).toEqual({ name: 'café' });
    expect(form('name=%82%A0', '; charset=shift_jis')).toEqual({ name: 'あ' });
    const res = await post(srv.url, { 'content-type': `${FORM}; charset=ISO-8859-1` }, 'city=M%FCnchen&x=caf%E9');
    expect(res.body.body).toEqual({ city: 'München', x: 'café' });
    // An unknown charset falls back to UTF-8 rather than failing.
    expect(form('a=%C3%A9', '; charset=x-unknown')).toEqual({ a: 'é' });
  });

  it('a __proto__ key is plain data', () => {
    const out = form('__proto__=x&constructor=y&polluted=no') as Record<string, unknown>;
    expect(Object.keys(out)).toEqual(['__proto__', 'constructor', 'polluted']);
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(JSON.parse(JSON.stringify(out))).toEqual(out);
  });

  it('over PAYLOAD_SIZE_LIMIT → 413', async () => {
    const res = await post(srv.url, { 'content-type': FORM }, `a=${'x'.repeat(70 * 1024)}`);
    expect(res.status).toBe(413);
  });
});
