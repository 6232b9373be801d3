import { describe, expect, it } from 'vitest';
import Value from 'typebox/value';
import Type from 'typebox';
import {
  Cors,
  IpAllowlist,
  RateLimit,
  WebhookAuth,
  authTriggerFields,
  mapSecrets,
  secretValues,
  type WebhookAuth as WebhookAuthT,
} from '../../src/auth/schema.js';
import { triggerSecurityProblems } from '../../src/auth/validate.js';
import { credentialLocations, redactBody, redactHeaders, redactQuery } from '../../src/auth/verify.js';
import { SecretBox, maskSecret } from '../../src/auth/secret-box.js';

describe('WebhookAuth schema', () => {
  const valid: unknown[] = [
    { type: 'none' },
    { type: 'basic', username: 'u', secrets: ['p'] },
    { type: 'apiKey', secrets: ['k'] },
    { type: 'apiKey', header: 'X-Key', secrets: ['k'] },
    { type: 'apiKey', query: 'key', secrets: [{ value: 'k', createdAt: '2024-05-01T00:00:00.000Z' }] },
    { type: 'token', secrets: ['old', 'new'] },
    { type: 'hmac', header: 'X-Signature', algorithm: 'sha512', encoding: 'base64', prefix: 'sha512=', secrets: ['s'] },
    { type: 'hmac', header: 'X-Signature', secrets: ['s'] },
    { type: 'github', secrets: ['s'] },
    { type: 'stripe', secrets: ['whsec_a', 'whsec_b'], toleranceSeconds: 600 },
    { type: 'standard-webhooks', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'] },
    { type: 'shopify', secrets: ['s'] },
    { type: 'slack', secrets: ['s'] },
  ];
  const invalid: unknown[] = [
    { type: 'magic', secrets: ['s'] },
    { type: 'github', secrets: [] },
    { type: 'github', secrets: ['a', 'b', 'c'] },
    { type: 'github', secrets: [''] },
    { type: 'github' },
    { type: 'github', secrets: ['s'], extra: 1 },
    { type: 'basic', username: 'a:b', secrets: ['p'] },
    { type: 'hmac', secrets: ['s'] },
    { type: 'hmac', header: 'bad header', secrets: ['s'] },
    { type: 'hmac', header: 'x', algorithm: 'md5', secrets: ['s'] },
    { type: 'standard-webhooks', secrets: ['whsec_not base64!'] },
    { type: 'stripe', secrets: ['s'], toleranceSeconds: 0 },
    { type: 'token', secrets: [{ value: 's', note: 'x' }] },
  ];

  it('accepts every type and preset', () => {
    for (const v of valid) expect(Value.Check(WebhookAuth, v), JSON.stringify(v)).toBe(true);
  });

  it('rejects bad configs', () => {
    for (const v of invalid) expect(Value.Check(WebhookAuth, v), JSON.stringify(v)).toBe(false);
  });

  it('ipAllowlist, rateLimit and cors schemas; fields spread into a trigger', () => {
    expect(Value.Check(IpAllowlist, ['10.0.0.0/8', '::1'])).toBe(true);
    expect(Value.Check(RateLimit, { perSecond: 0.5, burst: 10 })).toBe(true);
    expect(Value.Check(RateLimit, { perSecond: 0, burst: 10 })).toBe(false);
    expect(Value.Check(RateLimit, { perSecond: 1, burst: 0 })).toBe(false);
    expect(Value.Check(Cors, { origins: ['https://a.example', '*'] })).toBe(true);
    expect(Value.Check(Cors, { origins: ['https://a.example/path'] })).toBe(false);
    expect(Value.Check(Cors, { origins: [] })).toBe(false);
    const Trigger = Type.Object({ type: Type.Literal('webhook'), ...authTriggerFields }, { additionalProperties: false });
    expect(
      Value.Check(Trigger, {
        type: 'webhook',
        auth: { type: 'github', secrets: ['s'] },
        ipAllowlist: ['192.30.252.0/22'],
        rateLimit: { perSecond: 10, burst: 20 },
        cors: { origins: ['*'] },
      }),
    ).toBe(true);
  });

  it('triggerSecurityProblems catches what the schema cannot', () => {
    expect(triggerSecurityProblems({ auth: { type: 'github', secrets: ['s'] }, ipAllowlist: ['10.0.0.0/8'], cors: { origins: ['*'] } })).toEqual([]);
    const problems = triggerSecurityProblems({
      auth: { type: 'token', secrets: ['dup-secret', 'dup-secret'] },
      ipAllowlist: ['10.0.0.0/99'],
      cors: { origins: ['notaurl://'] },
    });
    expect(problems).toHaveLength(3);
    expect(problems.join('\n')).not.toContain('dup-secret');
    expect(triggerSecurityProblems({ auth: { type: 'standard-webhooks', secrets: ['whsec_'] } })).toHaveLength(1);
  });
});

describe('secret helpers', () => {
  it('secretValues / mapSecrets: seal for storage, open after loading, mask for the API', () => {
    const auth: WebhookAuthT = { type: 'github', secrets: ['plain-old', { value: 'plain-new-secret-value', createdAt: '2024-06-01T00:00:00Z' }] };
    expect(secretValues(auth)).toEqual(['plain-old', 'plain-new-secret-value']);
    const box = new SecretBox(Buffer.alloc(32, 1));
    const sealed = mapSecrets(auth, (v) => box.seal(v), '2024-01-01T00:00:00Z');
    expect(JSON.stringify(sealed)).not.toContain('plain-');
    expect(sealed?.type === 'github' && sealed.secrets[0]).toMatchObject({ createdAt: '2024-01-01T00:00:00Z' });
    const opened = mapSecrets(sealed, (v) => box.open(v));
    expect(secretValues(opened)).toEqual(secretValues(auth));
    expect(secretValues(mapSecrets(auth, maskSecret))).toEqual(['…', '…alue']);
    expect(mapSecrets(undefined, (v) => v)).toBeUndefined();
    expect(secretValues({ type: 'none' })).toEqual([]);
  });
});

describe('redaction', () => {
  it('redacts the credential-bearing headers of each type', () => {
    const headers = {
      authorization: 'Bearer tok',
      'x-api-key': 'k',
      'x-partner-key': ['k1', 'k2'],
      'x-webhook-token': 't',
      'x-hub-signature-256': 'sha256=abc',
      'content-type': 'application/json',
    };
    expect(redactHeaders({ type: 'basic', username: 'u', secrets: ['p'] }, headers)).toMatchObject({
      authorization: '[redacted]',
      'x-api-key': 'k',
    });
    expect(redactHeaders({ type: 'apiKey', secrets: ['k'] }, headers)).toMatchObject({ 'x-api-key': '[redacted]', authorization: 'Bearer tok' });
    expect(redactHeaders({ type: 'apiKey', header: 'X-Partner-Key', secrets: ['k'] }, headers)).toMatchObject({
      'x-partner-key': ['[redacted]', '[redacted]'],
      'x-api-key': 'k',
    });
    expect(redactHeaders({ type: 'token', secrets: ['t'] }, headers)).toMatchObject({
      authorization: '[redacted]',
      'x-webhook-token': '[redacted]',
      'content-type': 'application/json',
    });
    // Signatures are kept (a MAC reveals nothing of its key, and allows re-verification).
    expect(redactHeaders({ type: 'github', secrets: ['s'] }, headers)).toEqual(headers);
    expect(redactHeaders(undefined, headers)).toEqual(headers);
    // The input is not modified.
    expect(headers.authorization).toBe('Bearer tok');
  });

  it('tells which query params and body fields to redact', () => {
    expect(credentialLocations({ type: 'token', secrets: ['t'] })).toEqual({
      headers: ['x-webhook-token', 'authorization'],
      query: ['token', 'secret'],
      bodyFields: ['token'],
    });
    expect(credentialLocations({ type: 'apiKey', query: 'apikey', secrets: ['k'] })).toEqual({ headers: [], query: ['apikey'], bodyFields: [] });
    expect(redactQuery({ type: 'token', secrets: ['t'] }, { token: 't', secret: ['a', 'b'], page: '2' })).toEqual({
      token: '[redacted]',
      secret: ['[redacted]', '[redacted]'],
      page: '2',
    });
    expect(redactQuery({ type: 'apiKey', query: 'apikey', secrets: ['k'] }, { apikey: 'k', token: 'x' })).toEqual({ apikey: '[redacted]', token: 'x' });
    expect(redactBody({ type: 'token', secrets: ['t'] }, { token: 't', text: 'hi' })).toEqual({ token: '[redacted]', text: 'hi' });
    expect(redactBody({ type: 'token', secrets: ['t'] }, 'raw text')).toBe('raw text');
    expect(redactBody({ type: 'github', secrets: ['s'] }, { token: 'not ours' })).toEqual({ token: 'not ours' });
  });
});
