import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildFlow } from '../../src/api/flow-definition.js';
import { flowView } from '../../src/api/views.js';
import { isCredentialHeader } from '../../src/auth/credential-headers.js';
import { flowSecretCodec, maskFlowSecrets, newSecrets, resolveMaskedInput } from '../../src/auth/flow-secrets.js';
import { isSealed, SecretBox } from '../../src/auth/secret-box.js';
import { secretValues } from '../../src/core/credentials.js';
import { isHookdError } from '../../src/core/errors.js';
import type { Flow, HttpStepDef } from '../../src/core/flow.js';
import { compileHttpStep } from '../../src/flow/steps/http.js';

const bearer = `Bearer tok-${randomBytes(12).toString('hex')}`;
const apiKey = `key-${randomBytes(12).toString('hex')}`;
const triggerSecret = `trig-${randomBytes(12).toString('hex')}`;

function flowWith(id = 'f-step', headers: Record<string, string> = { authorization: bearer, 'X-Api-Key': apiKey, 'x-trace': 'keep-me' }): Flow {
  return buildFlow(
    {
      trigger: { type: 'webhook', auth: { type: 'token', secrets: [triggerSecret] } },
      steps: [
        { id: 'shape', type: 'transform', expression: 'body' },
        { id: 'call', type: 'http', url: 'https://api.example.com/orders?page=2', headers },
      ],
    },
    id,
  );
}
const headersOf = (f: Flow, i = 1) => (f.steps[i] as HttpStepDef).headers!;
const problemsOf = (fn: () => unknown): string[] => {
  try {
    fn();
  } catch (err) {
    if (isHookdError(err) && err.statusCode === 400) return err.details as string[];
    throw err;
  }
  throw new Error('expected a 400');
};

describe('which step headers are credentials', () => {
  it('authorization, proxy-authorization, cookie, and names holding token, secret, key, password, passwd, signature, auth, session — any case', () => {
    for (const name of ['Authorization', 'proxy-authorization', 'Cookie', 'X-Auth-Token', 'x-api-key', 'X-Client-Secret', 'x-password', 'x-passwd', 'X-Signature', 'x-session-id', 'apikey']) {
      expect(isCredentialHeader(name), name).toBe(true);
    }
    for (const name of ['content-type', 'accept', 'x-trace', 'user-agent', 'x-request-id']) expect(isCredentialHeader(name), name).toBe(false);
  });
});

describe('step credential headers at rest', () => {
  const box = new SecretBox(randomBytes(32));
  const codec = flowSecretCodec(box);

  it('seal: credential header values sealed (bound to the flow id), others and other steps untouched; open gives them back', () => {
    const flow = flowWith();
    const sealed = codec.seal(flow);
    const h = headersOf(sealed);
    expect(isSealed(h.authorization!)).toBe(true);
    expect(isSealed(h['X-Api-Key']!)).toBe(true);
    expect(h['x-trace']).toBe('keep-me');
    expect(sealed.steps[0]).toBe(flow.steps[0]);
    expect(JSON.stringify(sealed)).not.toContain(bearer.slice(7));
    expect(JSON.stringify(sealed)).not.toContain(apiKey);
    expect(JSON.stringify(sealed)).not.toContain(triggerSecret); // the trigger's secrets as before
    const opened = codec.open(sealed);
    expect(opened.steps).toEqual(flow.steps);
    expect(secretValues(opened.trigger.auth)).toEqual([triggerSecret]);
    // Copied to another flow id, a sealed value does not open.
    expect(() => codec.open({ ...sealed, id: 'other' })).toThrow(/failed authentication/);
  });

  it('a value stored plain (before this change) opens as itself and is sealed by the next save', () => {
    const legacy = flowWith();
    const opened = codec.open(legacy);
    expect(headersOf(opened)).toEqual(headersOf(legacy));
    expect(isSealed(headersOf(codec.seal(opened)).authorization!)).toBe(true);
  });

  it('a flow without credential headers keeps its step objects (compiled steps are cached per object)', () => {
    const flow = flowWith('f-plain', { 'x-trace': 'keep-me' });
    const opened = codec.open(codec.seal(flow));
    expect(opened.steps[1]).toBe(flow.steps[1]);
  });
});

describe('step credential headers in API answers', () => {
  it('masked (the auth scheme kept), except the values just created', () => {
    const flow = flowWith();
    const masked = headersOf(maskFlowSecrets(flow));
    expect(masked).toEqual({ authorization: `Bearer …${bearer.slice(-4)}`, 'X-Api-Key': `…${apiKey.slice(-4)}`, 'x-trace': 'keep-me' });
    expect(headersOf(maskFlowSecrets(flow, newSecrets(flow, undefined)))).toEqual(headersOf(flow));
    // Short values show no tail.
    expect(headersOf(maskFlowSecrets(flowWith('f', { cookie: 'sid=abc' })))).toEqual({ cookie: '…' });
  });

  it('newSecrets: a header value the flow held before is not new; a changed one is', () => {
    const before = flowWith();
    const after = flowWith('f-step', { authorization: bearer, 'X-Api-Key': `${apiKey}-2` });
    expect([...newSecrets(after, before)]).toEqual([`${apiKey}-2`]);
  });

  it('a read token sees them [redacted], hints included', () => {
    const view = flowView(flowWith(), 'http://h', undefined, true);
    expect((view.steps[1] as HttpStepDef).headers).toEqual({ authorization: '[redacted]', 'X-Api-Key': '[redacted]', 'x-trace': 'keep-me' });
  });
});

describe('a PUT sending masked header hints back', () => {
  const stored = flowWith();
  const shown = JSON.parse(JSON.stringify(flowView(stored, 'http://h'))) as Record<string, unknown> & { steps: Array<Record<string, unknown>> };
  const { createdAt: _c, updatedAt: _u, webhookUrl: _w, ...asShown } = shown;

  it('GET then PUT keeps every value (and the trigger secret)', () => {
    const rebuilt = buildFlow(resolveMaskedInput(asShown, stored), stored.id, stored);
    expect(headersOf(rebuilt)).toEqual(headersOf(stored));
    expect(secretValues(rebuilt.trigger.auth)).toEqual([triggerSecret]);
    expect(newSecrets(rebuilt, stored).size).toBe(0);
  });

  it('two short values that both show as `…` are told apart by their step and name', () => {
    const short = flowWith('f-short', { cookie: 'sid=one', 'x-api-key': 'two' });
    const put = { steps: [{ id: 'shape', type: 'transform', expression: 'body' }, { id: 'call', type: 'http', url: 'https://api.example.com/x', headers: { cookie: '…', 'x-api-key': '…' } }] };
    expect(headersOf(buildFlow(resolveMaskedInput(put, short), short.id, short))).toEqual({ cookie: 'sid=one', 'x-api-key': 'two' });
    // A step added in front: the default ids move, the names still find them.
    const moved = { steps: [{ type: 'log' }, { type: 'http', url: 'https://api.example.com/x', headers: { 'X-API-KEY': '…' } }] };
    expect((resolveMaskedInput(moved, short) as typeof moved).steps[1]!.headers).toEqual({ 'X-API-KEY': 'two' });
  });

  it('a hint the flow does not hold is a 400 naming its path (a new flow, another flow)', () => {
    const problems = problemsOf(() => resolveMaskedInput(asShown, undefined));
    expect(problems[0]).toMatch(/^\/trigger\/auth\/secrets\/0: /);
    expect(problems.slice(1)).toEqual([
      `/steps/1/headers/authorization: "Bearer …${bearer.slice(-4)}" is a masked value this flow does not hold; send the value itself`,
      `/steps/1/headers/X-Api-Key: "…${apiKey.slice(-4)}" is a masked value this flow does not hold; send the value itself`,
    ]);
    const other = flowWith('f-other', { authorization: 'Bearer another-token-of-some-length' });
    expect(problemsOf(() => resolveMaskedInput({ steps: asShown.steps }, other))).toHaveLength(2);
  });

  it('a hint is kept only for the origin it was given for: a url moved to another host needs the value itself', () => {
    const steps = shown.steps.map((s, i) => (i === 1 ? { ...s, url: 'https://collector.example.net/x' } : s));
    const problems = problemsOf(() => resolveMaskedInput({ ...asShown, steps }, stored));
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^\/steps\/1\/headers\/authorization: ".*" is a masked value given for calls to another origin/);
    // Another path on the same origin is fine.
    const samePlace = shown.steps.map((s, i) => (i === 1 ? { ...s, url: 'https://api.example.com/v2/orders' } : s));
    expect(headersOf(buildFlow(resolveMaskedInput({ ...asShown, steps: samePlace }, stored), stored.id, stored))).toEqual(headersOf(stored));
  });

  it('a new plain value replaces the stored one and is shown once', () => {
    const steps = shown.steps.map((s, i) => (i === 1 ? { ...s, headers: { ...(s.headers as object), 'X-Api-Key': 'brand-new-key-0123456789' } } : s));
    const rebuilt = buildFlow(resolveMaskedInput({ ...asShown, steps }, stored), stored.id, stored);
    expect(headersOf(rebuilt)).toEqual({ ...headersOf(stored), 'X-Api-Key': 'brand-new-key-0123456789' });
    expect([...newSecrets(rebuilt, stored)]).toEqual(['brand-new-key-0123456789']);
  });
});

describe('http step errors', () => {
  it('an invalid credential header value is named, never quoted; other headers named and quoted', () => {
    const def = (headers: Record<string, string>): HttpStepDef => ({ id: 's', type: 'http', url: 'https://api.example.com/', headers });
    expect(() => compileHttpStep(def({ authorization: 'Bearer sec\nret-value' }))).toThrow(/header "authorization": invalid value/);
    try {
      compileHttpStep(def({ 'x-api-key': 'sec\nret-value' }));
    } catch (err) {
      expect((err as Error).message).not.toContain('ret-value');
    }
    expect(() => compileHttpStep(def({ 'x-trace': 'a\nb' }))).toThrow('header "x-trace": invalid value "a\\nb"');
  });
});
