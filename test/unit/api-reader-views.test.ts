import { expect, it } from 'vitest';
import { readerHeaders, readerJson } from '../../src/api/views.js';
import { recordJson } from '../../src/flow/truncate.js';

const message = { headers: { 'x-hub-signature-256': 'sha256=abc123', 'x-sig': 'custom-456', 'x-trace': 'keep' }, body: { note: 'a "quoted" hmac word' } };

it('redacts signature-named values in recorded JSON, at any depth, and the flow’s own header name', () => {
  const out = JSON.parse(readerJson(JSON.stringify({ out: message }), 'x-sig')!);
  expect(out.out.headers).toEqual({ 'x-hub-signature-256': '[redacted]', 'x-sig': '[redacted]', 'x-trace': 'keep' });
  expect(out.out.body.note).toBe('a "quoted" hmac word'); // values that merely mention the word stay
  expect(readerHeaders({ 'X-Sig': 'v' } as Record<string, string>, 'x-sig')).toEqual({ 'X-Sig': '[redacted]' });
  expect(readerJson('{"a":1}')).toBe('{"a":1}');
});

it('redacts inside a truncation marker’s preview, a value cut off at its end included', () => {
  const long = { ...message, pad: 'x'.repeat(5000) };
  const marker = recordJson(long, 400)!;
  expect(marker).toMatch(/^\{"\$truncated":true/);
  expect(readerJson(marker)).not.toContain('abc123');
  // Cut right inside the signature's value.
  const json = JSON.stringify(message);
  const cut = JSON.stringify({ $truncated: true, bytes: json.length, preview: json.slice(0, json.indexOf('abc1') + 3) });
  expect(readerJson(cut)).not.toMatch(/abc/);
  // A colon inside an array string does not throw the scan off the next key.
  const tricky = JSON.stringify({ $truncated: true, bytes: 1, preview: '{"h":["a",":"],"x-signature":"secret-789","pad":"' });
  expect(readerJson(tricky)).not.toContain('secret-789');
  // Cut right after a backslash inside the value.
  expect(readerJson(JSON.stringify({ $truncated: true, bytes: 1, preview: '{"x-signature":"sec\\' }))).not.toContain('sec');
});

it('takes linear time on values full of the trigger words (no backtracking blow-up)', () => {
  const nasty = JSON.stringify({ $truncated: true, bytes: 1, preview: `{"k":"${'hmac signature '.repeat(1200)}` });
  const quotes = JSON.stringify({ $truncated: true, bytes: 1, preview: `{"x":["${'\\"'.repeat(8000)}"],"signature":1` });
  const t0 = performance.now();
  readerJson(nasty);
  readerJson(quotes);
  readerJson(JSON.stringify({ v: 'hmac'.repeat(4000) }));
  expect(performance.now() - t0).toBeLessThan(200);
});

it('an hmac flow’s header named by the stored marker is hidden without the flow: headers, recorded JSON, a cut preview, log inputs', async () => {
  const { loggableInput } = await import('../../src/flow/log-safe.js');
  const { storableHeaders } = await import('../../src/ingress/headers.js');
  const headers = storableHeaders({ 'content-type': 'application/json', 'x-payload-digest': 'd1g3st', 'x-hookd-signature-header': 'spoofed' }, false, 'x-payload-digest');
  // hookd's own marker, first; a sender's own value of it is dropped.
  expect(Object.entries(headers)[0]).toEqual(['x-hookd-signature-header', 'x-payload-digest']);
  expect(readerHeaders(headers)).toMatchObject({ 'x-payload-digest': '[redacted]', 'content-type': 'application/json', 'x-hookd-signature-header': 'x-payload-digest' });
  const m = { headers, body: { a: 1 } };
  expect(readerJson(JSON.stringify({ out: m }))).not.toContain('d1g3st');
  const json = JSON.stringify(m);
  const cut = JSON.stringify({ $truncated: true, bytes: json.length, preview: json.slice(0, json.indexOf('d1g3st') + 4) });
  expect(readerJson(cut)).not.toContain('d1g3');
  expect(JSON.stringify(loggableInput(m))).not.toContain('d1g3st');
  // Without the marker, a header of that name is not a signature.
  expect(readerHeaders({ 'x-payload-digest': 'plain' })).toEqual({ 'x-payload-digest': 'plain' });
});

it('the marker names a key of its own object, wherever a step put it; a sender cannot hide keys elsewhere', async () => {
  const { loggableInput } = await import('../../src/flow/log-safe.js');
  const m = { headers: { 'content-type': 'application/json' }, body: { 'x-hookd-signature-header': 'requestid', nested: { requestid: 'visible' } } };
  expect(JSON.parse(readerJson(JSON.stringify(m))!).body.nested.requestid).toBe('visible');
  expect((loggableInput(m) as typeof m).body.nested.requestid).toBe('visible');
  // A transform that output the headers alone, or under another key: still hidden.
  const headers = { 'x-hookd-signature-header': 'x-payload-digest', 'x-payload-digest': 'sha256=SECRETMAC' };
  for (const data of [headers, { h: headers }]) expect(readerJson(JSON.stringify(data)), JSON.stringify(data)).not.toContain('SECRETMAC');
});
