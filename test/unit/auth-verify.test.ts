import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  type AuthRequest,
  type AuthResult,
  createBodyVerifier,
  probeMayReveal,
  verifyRequest,
} from '../../src/auth/verify.js';
import type { WebhookAuth } from '../../src/auth/schema.js';
import { anyEqual, safeEqual } from '../../src/auth/timing-safe.js';

const NOW = 1_700_000_000_000;

function req(over: Partial<AuthRequest> = {}): AuthRequest {
  return { method: 'POST', headers: {}, query: {}, rawBody: Buffer.alloc(0), body: null, now: NOW, ...over };
}

function basicHeader(user: string, pass: string): string {
  return `Basic ${Buffer.from(`${user}:${pass}`, 'utf8').toString('base64')}`;
}

function expectFail(r: AuthResult, status: 401 | 403, reason: string): void {
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.status).toBe(status);
  expect(r.reason).toBe(reason);
  expect(r.code).toBe(status === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN');
}

describe('timing-safe helpers', () => {
  it('compares values of any length without throwing', () => {
    expect(safeEqual('secret', 'secret')).toBe(true);
    expect(safeEqual('secret', 'secreT')).toBe(false);
    expect(safeEqual('short', 'a much longer value than the other')).toBe(false);
    expect(safeEqual('', '')).toBe(true);
    expect(safeEqual('', 'x')).toBe(false);
    expect(safeEqual(Buffer.from('héllo'), 'héllo')).toBe(true);
    expect(safeEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3]))).toBe(true);
    expect(safeEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3, 0]))).toBe(false);
  });

  it('anyEqual matches any candidate against any expected value', () => {
    expect(anyEqual(['a', 'b'], ['c', 'b'])).toBe(true);
    expect(anyEqual(['a'], ['b', 'c'])).toBe(false);
    expect(anyEqual([], ['a'])).toBe(false);
    expect(anyEqual(['a'], [])).toBe(false);
  });
});

describe('none', () => {
  it('accepts anything, with or without a config', () => {
    expect(verifyRequest(undefined, req()).ok).toBe(true);
    expect(verifyRequest({ type: 'none' }, req()).ok).toBe(true);
  });
});

describe('basic', () => {
  const auth: WebhookAuth = { type: 'basic', username: 'hooks', secrets: ['s3cret-pässword'] };

  it('accepts the right username and password (UTF-8)', () => {
    const r = verifyRequest(auth, req({ headers: { authorization: basicHeader('hooks', 's3cret-pässword') } }));
    expect(r).toMatchObject({ ok: true });
  });

  it('accepts a lower-case scheme name and a password containing colons', () => {
    const a: WebhookAuth = { type: 'basic', username: 'u', secrets: ['a:b:c'] };
    const h = basicHeader('u', 'a:b:c').replace('Basic', 'basic');
    expect(verifyRequest(a, req({ headers: { authorization: h } })).ok).toBe(true);
  });

  it('missing credentials: 401 with a Basic challenge', () => {
    const r = verifyRequest(auth, req());
    expectFail(r, 401, 'missing');
    if (!r.ok) expect(r.headers).toEqual({ 'www-authenticate': 'Basic realm="hookd"' });
  });

  it('another scheme is missing Basic credentials (401 + challenge)', () => {
    const r = verifyRequest(auth, req({ headers: { authorization: 'Bearer abc' } }));
    expectFail(r, 401, 'missing');
    if (!r.ok) expect(r.headers?.['www-authenticate']).toBe('Basic realm="hookd"');
  });

  it('malformed credentials: 401', () => {
    expectFail(verifyRequest(auth, req({ headers: { authorization: 'Basic %%%' } })), 401, 'malformed');
    const noColon = `Basic ${Buffer.from('hooks').toString('base64')}`;
    expectFail(verifyRequest(auth, req({ headers: { authorization: noColon } })), 401, 'malformed');
    expectFail(
      verifyRequest(auth, req({ headers: { authorization: [basicHeader('a', 'b'), basicHeader('c', 'd')] } })),
      401,
      'malformed',
    );
  });

  it('wrong password or wrong username: 403 with the same message, no challenge', () => {
    const wrongPass = verifyRequest(auth, req({ headers: { authorization: basicHeader('hooks', 'nope') } }));
    const wrongUser = verifyRequest(auth, req({ headers: { authorization: basicHeader('other', 's3cret-pässword') } }));
    expectFail(wrongPass, 403, 'mismatch');
    expectFail(wrongUser, 403, 'mismatch');
    if (!wrongPass.ok && !wrongUser.ok) {
      expect(wrongPass.message).toBe(wrongUser.message);
      expect(wrongPass.headers).toBeUndefined();
      expect(wrongPass.message).not.toMatch(/user|pass/i);
    }
  });

  it('rotation: old and new passwords verify; a removed one fails', () => {
    const rotating: WebhookAuth = { type: 'basic', username: 'hooks', secrets: [{ value: 'old' }, { value: 'new', createdAt: '2024-05-01T00:00:00Z' }] };
    expect(verifyRequest(rotating, req({ headers: { authorization: basicHeader('hooks', 'old') } })).ok).toBe(true);
    expect(verifyRequest(rotating, req({ headers: { authorization: basicHeader('hooks', 'new') } })).ok).toBe(true);
    const rotated: WebhookAuth = { type: 'basic', username: 'hooks', secrets: ['new'] };
    expectFail(verifyRequest(rotated, req({ headers: { authorization: basicHeader('hooks', 'old') } })), 403, 'mismatch');
  });
});

describe('apiKey', () => {
  it('reads x-api-key by default', () => {
    const auth: WebhookAuth = { type: 'apiKey', secrets: ['k-123'] };
    expect(verifyRequest(auth, req({ headers: { 'x-api-key': 'k-123' } })).ok).toBe(true);
    expectFail(verifyRequest(auth, req({ headers: { 'x-api-key': 'k-124' } })), 403, 'mismatch');
    expectFail(verifyRequest(auth, req()), 401, 'missing');
    // Not from the query unless configured.
    expectFail(verifyRequest(auth, req({ query: { 'x-api-key': 'k-123' } })), 401, 'missing');
  });

  it('reads a configured header, case-insensitively configured', () => {
    const auth: WebhookAuth = { type: 'apiKey', header: 'X-Partner-Key', secrets: ['k-123'] };
    expect(verifyRequest(auth, req({ headers: { 'x-partner-key': 'k-123' } })).ok).toBe(true);
    expectFail(verifyRequest(auth, req({ headers: { 'x-api-key': 'k-123' } })), 401, 'missing');
  });

  it('reads a query parameter instead of a header when `query` is set', () => {
    const auth: WebhookAuth = { type: 'apiKey', query: 'apikey', secrets: ['k-123'] };
    expect(verifyRequest(auth, req({ query: { apikey: 'k-123' } })).ok).toBe(true);
    expectFail(verifyRequest(auth, req({ headers: { 'x-api-key': 'k-123' } })), 401, 'missing');
    expectFail(verifyRequest(auth, req({ query: { apikey: 'bad' } })), 403, 'mismatch');
    expectFail(verifyRequest(auth, req({ query: { apikey: ['k-123', 'x'] } })), 401, 'malformed');
  });

  it('with both header and query configured, either carries the key', () => {
    const auth: WebhookAuth = { type: 'apiKey', header: 'x-key', query: 'key', secrets: ['k-123'] };
    expect(verifyRequest(auth, req({ headers: { 'x-key': 'k-123' } })).ok).toBe(true);
    expect(verifyRequest(auth, req({ query: { key: 'k-123' } })).ok).toBe(true);
    expectFail(verifyRequest(auth, req()), 401, 'missing');
  });

  it('a repeated header is malformed; the header-only config decides before the body', () => {
    const auth: WebhookAuth = { type: 'apiKey', secrets: ['k'] };
    expectFail(verifyRequest(auth, req({ headers: { 'x-api-key': ['k', 'k'] } })), 401, 'malformed');
    expect(createBodyVerifier(auth, {}).early?.status).toBe(401);
    expect(createBodyVerifier(auth, { 'x-api-key': 'k' }).early).toBeUndefined();
  });

  it('rotation', () => {
    const auth: WebhookAuth = { type: 'apiKey', secrets: ['old-key', 'new-key'] };
    expect(verifyRequest(auth, req({ headers: { 'x-api-key': 'old-key' } })).ok).toBe(true);
    expect(verifyRequest(auth, req({ headers: { 'x-api-key': 'new-key' } })).ok).toBe(true);
    expectFail(
      verifyRequest({ type: 'apiKey', secrets: ['new-key'] }, req({ headers: { 'x-api-key': 'old-key' } })),
      403,
      'mismatch',
    );
  });
});

describe('token', () => {
  const auth: WebhookAuth = { type: 'token', secrets: ['tok-abc'] };
  const json = { 'content-type': 'application/json; charset=utf-8' };
  const form = { 'content-type': 'application/x-www-form-urlencoded' };

  it('accepts the token from each supported place', () => {
    expect(verifyRequest(auth, req({ query: { token: 'tok-abc' } })).ok).toBe(true);
    expect(verifyRequest(auth, req({ query: { secret: 'tok-abc' } })).ok).toBe(true);
    expect(verifyRequest(auth, req({ headers: { 'x-webhook-token': 'tok-abc' } })).ok).toBe(true);
    expect(verifyRequest(auth, req({ headers: { authorization: 'Bearer tok-abc' } })).ok).toBe(true);
    expect(verifyRequest(auth, req({ headers: json, body: { token: 'tok-abc', x: 1 } })).ok).toBe(true);
    expect(verifyRequest(auth, req({ headers: form, body: { token: 'tok-abc' } })).ok).toBe(true);
    expect(
      verifyRequest(auth, req({ headers: { 'content-type': 'application/vnd.api+json' }, body: { token: 'tok-abc' } })).ok,
    ).toBe(true);
  });

  it('a body field of a non JSON/form body does not count', () => {
    expectFail(verifyRequest(auth, req({ headers: { 'content-type': 'application/xml' }, body: { token: 'tok-abc' } })), 401, 'missing');
    expectFail(verifyRequest(auth, req({ headers: json, body: [{ token: 'tok-abc' }] })), 401, 'missing');
    expectFail(verifyRequest(auth, req({ headers: json, body: { nested: { token: 'tok-abc' } } })), 401, 'missing');
  });

  it('missing: 401; wrong: 403; repeated: 401', () => {
    expectFail(verifyRequest(auth, req()), 401, 'missing');
    expectFail(verifyRequest(auth, req({ headers: { authorization: 'Basic abc' } })), 401, 'missing');
    expectFail(verifyRequest(auth, req({ query: { token: 'tok-abd' } })), 403, 'mismatch');
    expectFail(verifyRequest(auth, req({ headers: json, body: { token: 'nope' } })), 403, 'mismatch');
    expectFail(verifyRequest(auth, req({ query: { token: ['tok-abc', 'other'] } })), 401, 'malformed');
  });

  it('an unrelated body field does not prevent a query token from matching', () => {
    const r = verifyRequest(auth, req({ query: { token: 'tok-abc' }, headers: json, body: { token: 'slack-legacy' } }));
    expect(r.ok).toBe(true);
  });

  it('rotation', () => {
    const rotating: WebhookAuth = { type: 'token', secrets: ['old', 'new'] };
    expect(verifyRequest(rotating, req({ query: { token: 'old' } })).ok).toBe(true);
    expect(verifyRequest(rotating, req({ query: { token: 'new' } })).ok).toBe(true);
    expectFail(verifyRequest({ type: 'token', secrets: ['new'] }, req({ query: { token: 'old' } })), 403, 'mismatch');
  });
});

describe('hmac (generic)', () => {
  const secret = 'generic-secret';
  // Bytes that are not valid UTF-8: a verifier that decoded and re-encoded the body would break.
  const binary = Buffer.from([0x7b, 0xff, 0xfe, 0x00, 0x0d, 0x0a, 0xc3, 0x28, 0x7d]);

  for (const algorithm of ['sha1', 'sha256', 'sha512'] as const) {
    for (const encoding of ['hex', 'base64'] as const) {
      it(`${algorithm}/${encoding} over raw bytes`, () => {
        const auth: WebhookAuth = { type: 'hmac', algorithm, encoding, header: 'X-Signature', prefix: `${algorithm}=`, secrets: [secret] };
        const sig = createHmac(algorithm, secret).update(binary).digest(encoding);
        const ok = verifyRequest(auth, req({ headers: { 'x-signature': `${algorithm}=${sig}` }, rawBody: binary }));
        expect(ok).toMatchObject({ ok: true });
        const other = createHmac(algorithm, 'other').update(binary).digest(encoding);
        expectFail(verifyRequest(auth, req({ headers: { 'x-signature': `${algorithm}=${other}` }, rawBody: binary })), 403, 'mismatch');
        // Tampered body.
        const tampered = Buffer.concat([binary, Buffer.from(' ')]);
        expectFail(verifyRequest(auth, req({ headers: { 'x-signature': `${algorithm}=${sig}` }, rawBody: tampered })), 403, 'mismatch');
      });
    }
  }

  it('defaults to sha256/hex without prefix; accepts upper-case hex and a case-insensitive prefix', () => {
    const body = Buffer.from('{"a":1}');
    const sig = createHmac('sha256', secret).update(body).digest('hex');
    expect(verifyRequest({ type: 'hmac', header: 'x-sig', secrets: [secret] }, req({ headers: { 'x-sig': sig }, rawBody: body })).ok).toBe(true);
    expect(verifyRequest({ type: 'hmac', header: 'x-sig', secrets: [secret] }, req({ headers: { 'x-sig': sig.toUpperCase() }, rawBody: body })).ok).toBe(true);
    const auth: WebhookAuth = { type: 'hmac', header: 'x-sig', prefix: 'sha256=', secrets: [secret] };
    expect(verifyRequest(auth, req({ headers: { 'x-sig': `SHA256=${sig}` }, rawBody: body })).ok).toBe(true);
  });

  it("gives the verified signature's bytes: one value for every spelling of it (dedupeBySignature), another for other bytes", () => {
    const body = Buffer.from('{"a":1}');
    const digest = createHmac('sha256', secret).update(body).digest();
    const verdict = (auth: WebhookAuth, value: string, raw = body) => {
      const v = verifyRequest(auth, req({ headers: { 'x-sig': value }, rawBody: raw }));
      if (!v.ok) throw new Error(v.message);
      return v.signature;
    };
    const hex: WebhookAuth = { type: 'hmac', header: 'x-sig', secrets: [secret] };
    expect(verdict(hex, digest.toString('hex'))).toEqual(digest);
    expect(verdict(hex, digest.toString('hex').toUpperCase())).toEqual(digest);
    const b64: WebhookAuth = { type: 'hmac', header: 'x-sig', encoding: 'base64', secrets: [secret] };
    expect(verdict(b64, digest.toString('base64'))).toEqual(digest);
    expect(verdict(b64, digest.toString('base64url'))).toEqual(digest);
    const other = Buffer.from('{"a":2}');
    expect(verdict(hex, createHmac('sha256', secret).update(other).digest('hex'), other)).not.toEqual(digest);
    // Rotation: the signature made under the second secret.
    const rotating: WebhookAuth = { type: 'hmac', header: 'x-sig', secrets: ['old', secret] };
    expect(verdict(rotating, digest.toString('hex'))).toEqual(digest);
  });

  it('missing header 401, wrong prefix / encoding / length 401', () => {
    const auth: WebhookAuth = { type: 'hmac', header: 'x-sig', prefix: 'sha256=', secrets: [secret] };
    const body = Buffer.from('x');
    const sig = createHmac('sha256', secret).update(body).digest('hex');
    expectFail(verifyRequest(auth, req({ rawBody: body })), 401, 'missing');
    expectFail(verifyRequest(auth, req({ headers: { 'x-sig': sig }, rawBody: body })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { 'x-sig': `sha256=${sig.slice(2)}` }, rawBody: body })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { 'x-sig': `sha256=zz${sig.slice(2)}` }, rawBody: body })), 401, 'malformed');
    const b64 = createHmac('sha256', secret).update(body).digest('base64');
    expectFail(verifyRequest(auth, req({ headers: { 'x-sig': `sha256=${b64}` }, rawBody: body })), 401, 'malformed');
  });

  it('rotation', () => {
    const body = Buffer.from('payload');
    const sign = (s: string) => createHmac('sha256', s).update(body).digest('hex');
    const rotating: WebhookAuth = { type: 'hmac', header: 'x-sig', secrets: ['old', 'new'] };
    expect(verifyRequest(rotating, req({ headers: { 'x-sig': sign('old') }, rawBody: body })).ok).toBe(true);
    expect(verifyRequest(rotating, req({ headers: { 'x-sig': sign('new') }, rawBody: body })).ok).toBe(true);
    const rotated: WebhookAuth = { type: 'hmac', header: 'x-sig', secrets: ['new'] };
    expectFail(verifyRequest(rotated, req({ headers: { 'x-sig': sign('old') }, rawBody: body })), 403, 'mismatch');
  });

  it('signature headers are known before the body: early 401 without reading it', () => {
    const v = createBodyVerifier({ type: 'hmac', header: 'x-sig', secrets: ['s'] }, {});
    expect(v.early?.status).toBe(401);
    expect(v.needsBody).toBe(false);
    const v2 = createBodyVerifier({ type: 'hmac', header: 'x-sig', secrets: ['s'] }, { 'x-sig': 'ab'.repeat(32) });
    expect(v2.early).toBeUndefined();
    expect(v2.needsBody).toBe(true);
  });

  it('finish() is idempotent and update() after finish() throws', () => {
    const body = Buffer.from('abc');
    const auth: WebhookAuth = { type: 'hmac', header: 'x-sig', secrets: ['s'] };
    const v = createBodyVerifier(auth, { 'x-sig': createHmac('sha256', 's').update(body).digest('hex') });
    v.update(body);
    const { rawBody: _r, ...rest } = req();
    expect(v.finish(rest).ok).toBe(true);
    expect(v.finish(rest).ok).toBe(true);
    expect(() => v.update(body)).toThrow();
  });
});

describe('probeMayReveal (HEAD)', () => {
  it('reveals unprotected flows and authenticated probes only', () => {
    expect(probeMayReveal(undefined, req({ method: 'HEAD' }))).toBe(true);
    expect(probeMayReveal({ type: 'none' }, req({ method: 'HEAD' }))).toBe(true);
    const basic: WebhookAuth = { type: 'basic', username: 'u', secrets: ['p'] };
    expect(probeMayReveal(basic, req({ method: 'HEAD' }))).toBe(false);
    expect(probeMayReveal(basic, req({ method: 'HEAD', headers: { authorization: basicHeader('u', 'x') } }))).toBe(false);
    expect(probeMayReveal(basic, req({ method: 'HEAD', headers: { authorization: basicHeader('u', 'p') } }))).toBe(true);
    expect(probeMayReveal({ type: 'github', secrets: ['s'] }, req({ method: 'HEAD' }))).toBe(false);
  });
});
