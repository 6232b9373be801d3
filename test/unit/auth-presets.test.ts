import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import Stripe from 'stripe';
import { Paddle } from '@paddle/paddle-node-sdk';
import twilio from 'twilio';
import { sign as githubSign } from '@octokit/webhooks-methods';
import { type AuthRequest, type AuthResult, createBodyVerifier, verifyRequest } from '../../src/auth/verify.js';
import type { WebhookAuth } from '../../src/auth/schema.js';
import { generateSecret } from '../../src/auth/secret-box.js';

const stripe = new Stripe('sk_test_not_used_for_network');

function req(over: Partial<AuthRequest> = {}): AuthRequest {
  return { method: 'POST', headers: {}, query: {}, rawBody: Buffer.alloc(0), body: null, now: Date.now(), ...over };
}

function expectFail(r: AuthResult, status: 401 | 403, reason: string): void {
  expect(r).toMatchObject({ ok: false, status, reason });
}

/** Bodies whose bytes a parse + re-serialise round trip would change: verification must use the raw bytes. */
const BODIES: Record<string, string> = {
  'non-ASCII text': '{"name":"Zoë Ünïcødé","city":"Zürich","emoji":"🚀👍","cjk":"東京"}',
  'odd whitespace': '{ "b" :1,\t"a" :  [ 1 ,2 ]\n\n,"c":"  spaced  " }\n\n',
  CRLF: '{"lines":"one"}\r\n{"lines":"two"}\r\n',
  'key order re-serialisation changes': '{"b":1,"10":2,"2":3,"a":{"z":0,"1":1}}',
  'duplicate keys and number forms': '{"a":1,"a":2,"n":1.0,"e":1e3,"u":"\\u00e9"}',
  'form body': 'token=x&text=caf%C3%A9+au+lait&empty=&a=1&a=2',
  empty: '',
};

it('the sample bodies really change when re-serialised', () => {
  for (const key of ['odd whitespace', 'key order re-serialisation changes', 'duplicate keys and number forms']) {
    const body = BODIES[key] ?? '';
    expect(JSON.stringify(JSON.parse(body))).not.toBe(body);
  }
});

/** Feeds the body in odd chunk sizes, splitting multi-byte characters. */
function streamVerify(auth: WebhookAuth, r: AuthRequest, sizes: number[]): AuthResult {
  const v = createBodyVerifier(auth, r.headers, { method: r.method, ...(r.url !== undefined ? { url: r.url } : {}) });
  if (v.early) return v.early;
  let off = 0;
  let i = 0;
  while (off < r.rawBody.length) {
    const n = sizes[i++ % sizes.length] ?? 1;
    v.update(r.rawBody.subarray(off, off + n));
    off += n;
  }
  const { rawBody: _raw, ...rest } = r;
  return v.finish(rest);
}

const CHUNKINGS = [[1], [3], [7, 1, 13], [64], [1000]];

function expectStreamingAgrees(auth: WebhookAuth, r: AuthRequest): void {
  const whole = verifyRequest(auth, r);
  for (const sizes of CHUNKINGS) expect(streamVerify(auth, r, sizes)).toEqual(whole);
}

describe('github (X-Hub-Signature-256, signed with @octokit/webhooks-methods)', () => {
  const secret = "It's a Secret to Everybody";
  const auth: WebhookAuth = { type: 'github', secrets: [secret] };

  // @octokit/webhooks-methods refuses to sign an empty payload (GitHub never sends one).
  for (const [name, body] of Object.entries(BODIES).filter(([, b]) => b !== '')) {
    it(`verifies the raw bytes: ${name}`, async () => {
      const r = req({ headers: { 'x-hub-signature-256': await githubSign(secret, body) }, rawBody: Buffer.from(body, 'utf8'), body: { parsed: true } });
      expect(verifyRequest(auth, r)).toMatchObject({ ok: true });
      expectStreamingAgrees(auth, r);
    });
  }

  it('GitHub documented test vector', () => {
    // docs.github.com "Validating webhook deliveries": secret "It's a Secret to Everybody", payload "Hello, World!"
    const r = req({
      headers: { 'x-hub-signature-256': 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17' },
      rawBody: Buffer.from('Hello, World!'),
    });
    expect(verifyRequest(auth, r).ok).toBe(true);
  });

  it('missing 401, malformed 401, wrong secret 403, tampered 403', async () => {
    const body = '{"action":"opened"}';
    expectFail(verifyRequest(auth, req({ rawBody: Buffer.from(body) })), 401, 'missing');
    // The legacy SHA-1 header alone is not accepted.
    expectFail(verifyRequest(auth, req({ headers: { 'x-hub-signature': 'sha1=' + 'a'.repeat(40) }, rawBody: Buffer.from(body) })), 401, 'missing');
    expectFail(verifyRequest(auth, req({ headers: { 'x-hub-signature-256': 'sha1=abc' }, rawBody: Buffer.from(body) })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { 'x-hub-signature-256': 'sha256=nothex' }, rawBody: Buffer.from(body) })), 401, 'malformed');
    const wrong = await githubSign('another secret', body);
    const r = req({ headers: { 'x-hub-signature-256': wrong }, rawBody: Buffer.from(body) });
    expectFail(verifyRequest(auth, r), 403, 'mismatch');
    expectStreamingAgrees(auth, r);
    const good = await githubSign(secret, body);
    expectFail(verifyRequest(auth, req({ headers: { 'x-hub-signature-256': good }, rawBody: Buffer.from(body + ' ') })), 403, 'mismatch');
  });

  it('rotation: old and new verify; a removed one fails', async () => {
    const body = '{"zen":"Keep it logically awesome."}';
    const rotating: WebhookAuth = { type: 'github', secrets: ['old-secret', 'new-secret'] };
    for (const [key, s] of ['old-secret', 'new-secret'].entries()) {
      const r = req({ headers: { 'x-hub-signature-256': await githubSign(s, body) }, rawBody: Buffer.from(body) });
      // The verdict names the secret that signed (a Zoom handshake answers under it).
      expect(verifyRequest(rotating, r)).toMatchObject({ ok: true, key });
    }
    const r = req({ headers: { 'x-hub-signature-256': await githubSign('old-secret', body) }, rawBody: Buffer.from(body) });
    expectFail(verifyRequest({ type: 'github', secrets: ['new-secret'] }, r), 403, 'mismatch');
  });
});

describe("paddle (Paddle-Signature, checked against Paddle's own SDK)", () => {
  const secret = 'pdl_ntfset_01hxyz_0123456789abcdefABCDEF';
  const auth: WebhookAuth = { type: 'paddle', secrets: [secret] };
  const sign = (body: string, ts: number, s = secret) => `ts=${ts};h1=${createHmac('sha256', s).update(`${ts}:${body}`).digest('hex')}`;
  const paddle = new Paddle('pdl_sdbx_apikey_not_used_for_network');

  for (const [name, body] of Object.entries(BODIES)) {
    it(`verifies the raw bytes, as the SDK does: ${name}`, async () => {
      const ts = Math.floor(Date.now() / 1000);
      const header = sign(body, ts);
      // The SDK agrees that this is Paddle's signature (the oracle for the scheme).
      expect(await paddle.webhooks.isSignatureValid(body, secret, header)).toBe(true);
      const r = req({ headers: { 'paddle-signature': header }, rawBody: Buffer.from(body), now: ts * 1000 + 1000 });
      expect(verifyRequest(auth, r)).toMatchObject({ ok: true });
      expectStreamingAgrees(auth, r);
      expect(await paddle.webhooks.isSignatureValid(body, 'pdl_ntfset_other', header)).toBe(false);
      expectFail(verifyRequest({ type: 'paddle', secrets: ['pdl_ntfset_other'] }, r), 403, 'mismatch');
    });
  }

  it('300 s of tolerance by default, in both directions; configurable', () => {
    const body = '{"event_id":"evt_01","notification_id":"ntf_01","event_type":"transaction.completed"}';
    const ts = 1_700_000_000;
    const r = (now: number) => req({ headers: { 'paddle-signature': sign(body, ts) }, rawBody: Buffer.from(body), now });
    expect(verifyRequest(auth, r(ts * 1000 + 300_000)).ok).toBe(true);
    expect(verifyRequest(auth, r(ts * 1000 - 300_000)).ok).toBe(true);
    expectFail(verifyRequest(auth, r(ts * 1000 + 301_000)), 403, 'timestamp');
    expectFail(verifyRequest(auth, r(ts * 1000 - 301_000)), 403, 'timestamp');
    expectFail(verifyRequest({ type: 'paddle', secrets: [secret], toleranceSeconds: 5 }, r(ts * 1000 + 6_000)), 403, 'timestamp');
  });

  it('any h1 may match (a secret being rotated); a malformed one beside a valid one is ignored; missing 401, malformed 401', () => {
    const body = '{}';
    const ts = 1_700_000_000;
    const valid = sign(body, ts).split(';')[1]!;
    const other = sign(body, ts, 'pdl_ntfset_old').split(';')[1]!;
    const at = (header: string) => req({ headers: { 'paddle-signature': header }, rawBody: Buffer.from(body), now: ts * 1000 });
    expect(verifyRequest(auth, at(`ts=${ts};${other};h1=zz;${valid}`)).ok).toBe(true);
    expectFail(verifyRequest(auth, req({ rawBody: Buffer.from(body) })), 401, 'missing');
    for (const bad of [`h1=${valid.slice(3)}`, `ts=${ts}`, `ts=${ts};h1=abc`, `ts=x;${valid}`, `ts=${ts};ts=${ts};${valid}`]) {
      expectFail(verifyRequest(auth, at(bad)), 401, 'malformed');
    }
  });
});

describe('stripe (Stripe-Signature, signed with stripe.webhooks.generateTestHeaderString)', () => {
  const secret = 'whsec_test_secret_0123456789abcdef';
  const auth: WebhookAuth = { type: 'stripe', secrets: [secret] };
  const t = 1_700_000_000;
  const header = (payload: string, s = secret, timestamp = t) =>
    stripe.webhooks.generateTestHeaderString({ payload, secret: s, timestamp });

  for (const [name, body] of Object.entries(BODIES)) {
    it(`verifies the raw bytes: ${name}`, () => {
      const r = req({ headers: { 'stripe-signature': header(body) }, rawBody: Buffer.from(body), now: t * 1000 + 1234 });
      expect(verifyRequest(auth, r)).toMatchObject({ ok: true });
      expectStreamingAgrees(auth, r);
    });
  }

  it('rejects timestamps outside the tolerance in both directions (300 s default)', () => {
    const body = '{"id":"evt_1","object":"event"}';
    const r = (now: number) => req({ headers: { 'stripe-signature': header(body) }, rawBody: Buffer.from(body), now });
    expect(verifyRequest(auth, r(t * 1000 + 300_000)).ok).toBe(true);
    expect(verifyRequest(auth, r(t * 1000 - 300_000)).ok).toBe(true);
    expectFail(verifyRequest(auth, r(t * 1000 + 301_000)), 403, 'timestamp');
    expectFail(verifyRequest(auth, r(t * 1000 - 301_000)), 403, 'timestamp');
    const strict: WebhookAuth = { type: 'stripe', secrets: [secret], toleranceSeconds: 10 };
    expectFail(verifyRequest(strict, r(t * 1000 + 11_000)), 403, 'timestamp');
  });

  it('a stale timestamp with a wrong signature is a signature mismatch (the timestamp is only reported to signers)', () => {
    const body = '{}';
    const r = req({ headers: { 'stripe-signature': header(body, 'whsec_wrong') }, rawBody: Buffer.from(body), now: t * 1000 + 9_999_000 });
    expectFail(verifyRequest(auth, r), 403, 'mismatch');
  });

  it('accepts any of several v1 signatures (Stripe rolling its secret); ignores v0', () => {
    const body = '{"id":"evt_2"}';
    const a = header(body, 'whsec_other');
    const b = header(body);
    const v1a = a.split(',')[1];
    const combined = `${b.split(',')[0]},${v1a},v0=${'0'.repeat(64)},${b.split(',')[1]}`;
    const r = req({ headers: { 'stripe-signature': combined }, rawBody: Buffer.from(body), now: t * 1000 });
    expect(verifyRequest(auth, r).ok).toBe(true);
    expectStreamingAgrees(auth, r);
    // A v1 that is no digest at all does not void the valid one beside it.
    const [ts, valid] = b.split(',');
    for (const bad of ['v1=deadbeef', 'v1=xyz', 'v1=']) {
      const mixed = req({ headers: { 'stripe-signature': `${ts},${bad},${valid}` }, rawBody: Buffer.from(body), now: t * 1000 });
      expect(verifyRequest(auth, mixed).ok, bad).toBe(true);
    }
  });

  it('missing 401, malformed 401, wrong 403', () => {
    const body = '{}';
    const now = t * 1000;
    expectFail(verifyRequest(auth, req({ rawBody: Buffer.from(body), now })), 401, 'missing');
    expectFail(verifyRequest(auth, req({ headers: { 'stripe-signature': 'v1=' + 'a'.repeat(64) }, rawBody: Buffer.from(body), now })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { 'stripe-signature': `t=${t}` }, rawBody: Buffer.from(body), now })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { 'stripe-signature': `t=abc,v1=${'a'.repeat(64)}` }, rawBody: Buffer.from(body), now })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { 'stripe-signature': `t=${t},v1=xyz` }, rawBody: Buffer.from(body), now })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { 'stripe-signature': header(body, 'whsec_nope') }, rawBody: Buffer.from(body), now })), 403, 'mismatch');
    // A signature for another timestamp does not verify with this one.
    const other = header(body, secret, t + 1).replace(`t=${t + 1}`, `t=${t}`);
    expectFail(verifyRequest(auth, req({ headers: { 'stripe-signature': other }, rawBody: Buffer.from(body), now })), 403, 'mismatch');
  });

  it('rotation', () => {
    const body = '{"id":"evt_3"}';
    const rotating: WebhookAuth = { type: 'stripe', secrets: ['whsec_old', 'whsec_new'] };
    const r = (s: string) => req({ headers: { 'stripe-signature': header(body, s) }, rawBody: Buffer.from(body), now: t * 1000 });
    expect(verifyRequest(rotating, r('whsec_old')).ok).toBe(true);
    expect(verifyRequest(rotating, r('whsec_new')).ok).toBe(true);
    expectFail(verifyRequest({ type: 'stripe', secrets: ['whsec_new'] }, r('whsec_old')), 403, 'mismatch');
  });
});

describe('standard-webhooks (signed with standardwebhooks Webhook#sign)', () => {
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const auth: WebhookAuth = { type: 'standard-webhooks', secrets: [secret] };
  const t = 1_700_000_000;
  const headers = (body: string, s = secret, id = 'msg_2Lk3Jc9', ts = t) => ({
    'webhook-id': id,
    'webhook-timestamp': String(ts),
    'webhook-signature': new Webhook(s).sign(id, new Date(ts * 1000), body),
  });

  for (const [name, body] of Object.entries(BODIES)) {
    it(`verifies the raw bytes: ${name}`, () => {
      const r = req({ headers: headers(body), rawBody: Buffer.from(body), now: t * 1000 });
      expect(verifyRequest(auth, r)).toMatchObject({ ok: true });
      expectStreamingAgrees(auth, r);
    });
  }

  it('published test vector', () => {
    const r = req({
      headers: {
        'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
        'webhook-timestamp': '1614265330',
        'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
      },
      rawBody: Buffer.from('{"test": 2432232314}'),
      now: 1614265330 * 1000,
    });
    expect(verifyRequest(auth, r).ok).toBe(true);
  });

  it('several space-separated signatures in one header; unknown versions ignored', () => {
    const body = '{"type":"invoice.paid"}';
    const mine = headers(body);
    const other = headers(body, 'whsec_' + Buffer.from('another key of 24 bytes!').toString('base64'));
    const sig = `v1a,${'A'.repeat(86)}== ${other['webhook-signature']} ${mine['webhook-signature']}`;
    const r = req({ headers: { ...mine, 'webhook-signature': sig }, rawBody: Buffer.from(body), now: t * 1000 });
    expect(verifyRequest(auth, r).ok).toBe(true);
    expectStreamingAgrees(auth, r);
    const onlyOther = req({ headers: { ...mine, 'webhook-signature': other['webhook-signature'] }, rawBody: Buffer.from(body), now: t * 1000 });
    expectFail(verifyRequest(auth, onlyOther), 403, 'mismatch');
  });

  it('accepts svix-* headers (same scheme, Svix branding)', () => {
    const body = '{"a":1}';
    const h = headers(body);
    const r = req({
      headers: { 'svix-id': h['webhook-id'], 'svix-timestamp': h['webhook-timestamp'], 'svix-signature': h['webhook-signature'] },
      rawBody: Buffer.from(body),
      now: t * 1000,
    });
    expect(verifyRequest(auth, r).ok).toBe(true);
  });

  it('expired and future timestamps (5 min) are rejected; the library agrees on a valid one', () => {
    const body = '{"x":1}';
    const r = (now: number) => req({ headers: headers(body), rawBody: Buffer.from(body), now });
    expect(verifyRequest(auth, r(t * 1000 + 299_000)).ok).toBe(true);
    expectFail(verifyRequest(auth, r(t * 1000 + 301_000)), 403, 'timestamp');
    expectFail(verifyRequest(auth, r(t * 1000 - 301_000)), 403, 'timestamp');
    // Cross-check with the reference verifier at the current time.
    const nowTs = Math.floor(Date.now() / 1000);
    const live = headers(body, secret, 'msg_live', nowTs);
    expect(() => new Webhook(secret).verify(body, live)).not.toThrow();
    expect(verifyRequest(auth, req({ headers: live, rawBody: Buffer.from(body) })).ok).toBe(true);
  });

  it('the id and timestamp are signed: changing either fails', () => {
    const body = '{}';
    const h = headers(body);
    expectFail(verifyRequest(auth, req({ headers: { ...h, 'webhook-id': 'msg_other' }, rawBody: Buffer.from(body), now: t * 1000 })), 403, 'mismatch');
    expectFail(verifyRequest(auth, req({ headers: { ...h, 'webhook-timestamp': String(t + 1) }, rawBody: Buffer.from(body), now: t * 1000 })), 403, 'mismatch');
  });

  it('missing 401, malformed 401, wrong 403', () => {
    const body = '{}';
    const h = headers(body);
    const now = t * 1000;
    expectFail(verifyRequest(auth, req({ rawBody: Buffer.from(body), now })), 401, 'missing');
    expectFail(verifyRequest(auth, req({ headers: { ...h, 'webhook-id': undefined }, rawBody: Buffer.from(body), now })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { ...h, 'webhook-timestamp': 'soon' }, rawBody: Buffer.from(body), now })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { ...h, 'webhook-signature': 'v1' }, rawBody: Buffer.from(body), now })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { ...h, 'webhook-signature': 'v1,@@@' }, rawBody: Buffer.from(body), now })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { ...h, 'webhook-signature': 'v2,abcd' }, rawBody: Buffer.from(body), now })), 401, 'malformed');
    // Entries that cannot be a signature are passed over when a valid one is there.
    for (const bad of ['v1,bogus', 'v1,@@@', 'garbage', `v1,${Buffer.alloc(20).toString('base64')}`]) {
      const mixed = { ...h, 'webhook-signature': `${bad} ${h['webhook-signature']}` };
      expect(verifyRequest(auth, req({ headers: mixed, rawBody: Buffer.from(body), now })).ok, bad).toBe(true);
    }
    expectFail(verifyRequest(auth, req({ headers: headers(body, generateSecret('standard-webhooks')), rawBody: Buffer.from(body), now })), 403, 'mismatch');
  });

  it('rotation with generated secrets', () => {
    const oldS = generateSecret('standard-webhooks');
    const newS = generateSecret('standard-webhooks');
    const body = '{"rotate":true}';
    const rotating: WebhookAuth = { type: 'standard-webhooks', secrets: [oldS, newS] };
    expect(verifyRequest(rotating, req({ headers: headers(body, oldS), rawBody: Buffer.from(body), now: t * 1000 })).ok).toBe(true);
    expect(verifyRequest(rotating, req({ headers: headers(body, newS), rawBody: Buffer.from(body), now: t * 1000 })).ok).toBe(true);
    expectFail(
      verifyRequest({ type: 'standard-webhooks', secrets: [newS] }, req({ headers: headers(body, oldS), rawBody: Buffer.from(body), now: t * 1000 })),
      403,
      'mismatch',
    );
  });
});

describe('shopify (X-Shopify-Hmac-Sha256, base64)', () => {
  // Shopify publishes no signing library for Node; this follows its docs: base64(HMAC-SHA256(client secret, raw body)).
  const secret = 'shpss_0123456789abcdef0123456789abcdef';
  const auth: WebhookAuth = { type: 'shopify', secrets: [secret] };
  const sign = (body: string | Buffer, s = secret) => createHmac('sha256', s).update(body).digest('base64');

  for (const [name, body] of Object.entries(BODIES)) {
    it(`verifies the raw bytes: ${name}`, () => {
      const r = req({ headers: { 'x-shopify-hmac-sha256': sign(body) }, rawBody: Buffer.from(body) });
      expect(verifyRequest(auth, r)).toMatchObject({ ok: true });
      expectStreamingAgrees(auth, r);
    });
  }

  it('missing 401, malformed 401, wrong 403, rotation', () => {
    const body = '{"id":820982911946154508}';
    expectFail(verifyRequest(auth, req({ rawBody: Buffer.from(body) })), 401, 'missing');
    expectFail(verifyRequest(auth, req({ headers: { 'x-shopify-hmac-sha256': 'not base64!' }, rawBody: Buffer.from(body) })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { 'x-shopify-hmac-sha256': sign(body).slice(0, 20) }, rawBody: Buffer.from(body) })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { 'x-shopify-hmac-sha256': sign(body, 'other') }, rawBody: Buffer.from(body) })), 403, 'mismatch');
    const rotating: WebhookAuth = { type: 'shopify', secrets: ['old', 'new'] };
    expect(verifyRequest(rotating, req({ headers: { 'x-shopify-hmac-sha256': sign(body, 'old') }, rawBody: Buffer.from(body) })).ok).toBe(true);
    expect(verifyRequest(rotating, req({ headers: { 'x-shopify-hmac-sha256': sign(body, 'new') }, rawBody: Buffer.from(body) })).ok).toBe(true);
    expectFail(
      verifyRequest({ type: 'shopify', secrets: ['new'] }, req({ headers: { 'x-shopify-hmac-sha256': sign(body, 'old') }, rawBody: Buffer.from(body) })),
      403,
      'mismatch',
    );
  });
});

describe('slack (X-Slack-Signature v0)', () => {
  const secret = '8f742231b10e8888abcd99yyyzzz85a5';
  const auth: WebhookAuth = { type: 'slack', secrets: [secret] };
  const sign = (ts: number, body: string, s = secret) => `v0=${createHmac('sha256', s).update(`v0:${ts}:${body}`).digest('hex')}`;
  const t = 1_531_420_618;

  it("Slack's documented example request verifies", () => {
    const body =
      'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c';
    const r = req({
      headers: {
        'x-slack-signature': 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503',
        'x-slack-request-timestamp': String(t),
      },
      rawBody: Buffer.from(body),
      now: t * 1000,
    });
    expect(verifyRequest(auth, r)).toMatchObject({ ok: true });
    expectStreamingAgrees(auth, r);
  });

  for (const [name, body] of Object.entries(BODIES)) {
    it(`verifies the raw bytes: ${name}`, () => {
      const r = req({ headers: { 'x-slack-signature': sign(t, body), 'x-slack-request-timestamp': String(t) }, rawBody: Buffer.from(body), now: t * 1000 });
      expect(verifyRequest(auth, r)).toMatchObject({ ok: true });
      expectStreamingAgrees(auth, r);
    });
  }

  it('expired and future timestamps rejected; missing/malformed/wrong', () => {
    const body = 'payload=%7B%7D';
    const headers = { 'x-slack-signature': sign(t, body), 'x-slack-request-timestamp': String(t) };
    expectFail(verifyRequest(auth, req({ headers, rawBody: Buffer.from(body), now: (t + 301) * 1000 })), 403, 'timestamp');
    expectFail(verifyRequest(auth, req({ headers, rawBody: Buffer.from(body), now: (t - 301) * 1000 })), 403, 'timestamp');
    expect(verifyRequest(auth, req({ headers, rawBody: Buffer.from(body), now: (t + 300) * 1000 })).ok).toBe(true);
    expectFail(verifyRequest(auth, req({ rawBody: Buffer.from(body), now: t * 1000 })), 401, 'missing');
    expectFail(verifyRequest(auth, req({ headers: { 'x-slack-signature': headers['x-slack-signature'] }, rawBody: Buffer.from(body), now: t * 1000 })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { ...headers, 'x-slack-signature': 'v1=abc' }, rawBody: Buffer.from(body), now: t * 1000 })), 401, 'malformed');
    expectFail(verifyRequest(auth, req({ headers: { ...headers, 'x-slack-signature': sign(t, body, 'wrong') }, rawBody: Buffer.from(body), now: t * 1000 })), 403, 'mismatch');
  });

  it('rotation', () => {
    const body = 'a=1';
    const rotating: WebhookAuth = { type: 'slack', secrets: ['old', 'new'] };
    const r = (s: string) => req({ headers: { 'x-slack-signature': sign(t, body, s), 'x-slack-request-timestamp': String(t) }, rawBody: Buffer.from(body), now: t * 1000 });
    expect(verifyRequest(rotating, r('old')).ok).toBe(true);
    expect(verifyRequest(rotating, r('new')).ok).toBe(true);
    expectFail(verifyRequest({ type: 'slack', secrets: ['new'] }, r('old')), 403, 'mismatch');
  });
});

describe('streaming verifier', () => {
  it('gives the same verdict for every chunking, accept and reject, on a large body', async () => {
    const big = Buffer.from(JSON.stringify({ items: Array.from({ length: 5000 }, (_, i) => ({ i, s: 'é✓🚀'.repeat(i % 7) })) }));
    const auth: WebhookAuth = { type: 'github', secrets: ['s'] };
    const good = req({ headers: { 'x-hub-signature-256': await githubSign('s', big.toString('utf8')) }, rawBody: big });
    const bad = req({ headers: { 'x-hub-signature-256': await githubSign('t', big.toString('utf8')) }, rawBody: big });
    for (const sizes of [[1], [5, 17, 4093], [65536]]) {
      expect(streamVerify(auth, good, sizes)).toMatchObject({ ok: true });
      expectFail(streamVerify(auth, bad, sizes), 403, 'mismatch');
    }
  });
});

describe("twilio (X-Twilio-Signature over the URL and the form, checked against Twilio's own SDK)", () => {
  const token = 'twilio-auth-token-0123456789abcdef';
  const auth: WebhookAuth = { type: 'twilio', secrets: [token] };
  const form = 'To=%2B15550001111&From=%2B15559998888&Body=Caf%C3%A9+au+lait%20%26+more%3D&MediaUrl0=&AddOns=%7B%22a%22%3A1%7D&Tag=b&Tag=a&Tag=b&z%C3%A9=1';
  const params = (): Record<string, string | string[]> => {
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of new URLSearchParams(form)) {
      const had = out[k];
      out[k] = had === undefined ? v : [...(Array.isArray(had) ? had : [had]), v];
    }
    return out;
  };
  const formHeaders = (signature: string, more: Record<string, string> = {}) => ({ 'x-twilio-signature': signature, 'content-type': 'application/x-www-form-urlencoded; charset=UTF-8', ...more });

  it('a form POST: the URL called and every parameter, as the SDK signs and checks them', () => {
    const url = 'https://hooks.example.com/hook/sms/in?x=1&y=%27q%27';
    const signature = twilio.getExpectedTwilioSignature(token, url, params());
    // The SDK agrees that this is Twilio's signature (the oracle for the scheme).
    expect(twilio.validateRequest(token, signature, url, params())).toBe(true);
    const r = req({ headers: formHeaders(signature), rawBody: Buffer.from(form), url });
    expect(verifyRequest(auth, r)).toMatchObject({ ok: true, key: 0 });
    expectStreamingAgrees(auth, r);
    // Another parameter value, another URL, another token: not Twilio's request.
    expectFail(verifyRequest(auth, { ...r, rawBody: Buffer.from(form.replace('Tag=a', 'Tag=c')) }), 403, 'mismatch');
    expectFail(verifyRequest(auth, { ...r, url: url.replace('x=1', 'x=2') }), 403, 'mismatch');
    expectFail(verifyRequest(auth, { ...r, url: url.replace('/in', '/out') }), 403, 'mismatch');
    expectFail(verifyRequest({ type: 'twilio', secrets: ['another-token-0123456789'] }, r), 403, 'mismatch');
    expect(twilio.validateRequest('another-token-0123456789', signature, url, params())).toBe(false);
  });

  it("the URL with or without the scheme's default port, whichever Twilio signed", () => {
    const bare = 'https://hooks.example.com/hook/sms';
    for (const [signed, seen] of [[bare, 'https://hooks.example.com:443/hook/sms'], ['https://hooks.example.com:443/hook/sms', bare], ['http://h.example.com/hook/sms', 'http://h.example.com:80/hook/sms']] as const) {
      const signature = twilio.getExpectedTwilioSignature(token, signed, params());
      expect(twilio.validateRequest(token, signature, seen, params())).toBe(true);
      expect(verifyRequest(auth, req({ headers: formHeaders(signature), rawBody: Buffer.from(form), url: seen })).ok).toBe(true);
    }
    // Another port is another URL.
    const signature = twilio.getExpectedTwilioSignature(token, 'https://hooks.example.com:8443/hook/sms', params());
    expectFail(verifyRequest(auth, req({ headers: formHeaders(signature), rawBody: Buffer.from(form), url: 'https://hooks.example.com:9443/hook/sms' })), 403, 'mismatch');
  });

  it('a JSON body: covered by bodySHA256 in the signed URL; a changed body fails', () => {
    const body = '{"event":"message.delivered","sid":"SM1","n":1.0}';
    const hash = createHash('sha256').update(body).digest('hex');
    const url = `https://hooks.example.com/hook/events?bodySHA256=${hash}`;
    const signature = twilio.getExpectedTwilioSignature(token, url, {});
    expect(twilio.validateRequestWithBody(token, signature, url, body)).toBe(true);
    const r = req({ headers: { 'x-twilio-signature': signature, 'content-type': 'application/json' }, rawBody: Buffer.from(body), url });
    expect(verifyRequest(auth, r).ok).toBe(true);
    expectStreamingAgrees(auth, r);
    const changed = body.replace('1.0', '2.0');
    expect(twilio.validateRequestWithBody(token, signature, url, changed)).toBe(false);
    expectFail(verifyRequest(auth, { ...r, rawBody: Buffer.from(changed) }), 403, 'mismatch');
  });

  it('GET: the query is the signed part; SharedKey signatures with HMAC-SHA256; rotation; malformed headers', () => {
    const url = 'https://hooks.example.com/hook/voice?CallSid=CA1&From=%2B1555';
    const get = (signature: string, more: Record<string, string> = {}) => req({ method: 'GET', headers: { 'x-twilio-signature': signature, ...more }, url });
    expect(verifyRequest(auth, get(twilio.getExpectedTwilioSignature(token, url, {}))).ok).toBe(true);
    const settings = { 'x-twilio-webhooks-signature-settings': 'key=webhooks_sharedkey_1,algorithm=HMAC_SHA256' };
    const sha256 = twilio.getExpectedTwilioSignature(token, url, {}, 'HMAC_SHA256');
    expect(twilio.validateRequest(token, sha256, url, {}, twilio.getSignatureAlgorithm(settings['x-twilio-webhooks-signature-settings']))).toBe(true);
    expect(verifyRequest(auth, get(sha256, settings)).ok).toBe(true);
    // The digest must be the named algorithm's.
    expectFail(verifyRequest(auth, get(sha256)), 401, 'malformed');
    expectFail(verifyRequest(auth, get(sha256, { 'x-twilio-webhooks-signature-settings': 'algorithm=HMAC_MD5' })), 401, 'malformed');
    // Primary and secondary auth tokens while rotating: either verifies, and which one is told.
    const secondary = 'twilio-secondary-token-0123456789';
    expect(verifyRequest({ type: 'twilio', secrets: [token, secondary] }, get(twilio.getExpectedTwilioSignature(secondary, url, {})))).toMatchObject({ ok: true, key: 1 });
    expectFail(verifyRequest(auth, req({ method: 'GET', url })), 401, 'missing');
    expectFail(verifyRequest(auth, get('not base64!')), 401, 'malformed');
    expectFail(verifyRequest(auth, { ...get(twilio.getExpectedTwilioSignature(token, url, {})), headers: { 'x-twilio-signature': ['a', 'b'] } }), 401, 'malformed');
    // No URL to check against: nothing verifies.
    expectFail(verifyRequest(auth, req({ method: 'GET', headers: { 'x-twilio-signature': twilio.getExpectedTwilioSignature(token, url, {}) } })), 403, 'mismatch');
  });
});

describe('hubspot (signature v3: method + URL + body + timestamp)', () => {
  const secret = 'yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy';
  const auth: WebhookAuth = { type: 'hubspot', secrets: [secret] };
  // HubSpot's documented construction (what its SDK's Signature.getSignature('v3') computes).
  const sign = (method: string, uri: string, body: string, ts: number, key = secret) => createHmac('sha256', key).update(`${method}${uri}${body}${ts}`, 'utf8').digest('base64');
  const body = '[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","objectId":123,"name":"Zoë"}]';
  const now = 1_764_000_000_000;
  const r = (headers: Record<string, string | string[]>, url = 'https://www.example.com/webhook_uri', at = now, raw = body) =>
    req({ method: 'POST', headers, rawBody: Buffer.from(raw), url, now: at });
  const signed = (url = 'https://www.example.com/webhook_uri', ts = now, key = secret) => ({ 'x-hubspot-signature-v3': sign('POST', url, body, ts, key), 'x-hubspot-request-timestamp': String(ts) });

  it('verifies, streamed in any chunking; another body, URL, method, secret or timestamp fails', () => {
    const good = r(signed());
    expect(verifyRequest(auth, good)).toMatchObject({ ok: true, key: 0 });
    expectStreamingAgrees(auth, good);
    expectFail(verifyRequest(auth, r(signed(), undefined, now, body.replace('123', '124'))), 403, 'mismatch');
    expectFail(verifyRequest(auth, r(signed(), 'https://www.example.com/other')), 403, 'mismatch');
    expectFail(verifyRequest(auth, { ...good, method: 'PUT' }), 403, 'mismatch');
    expectFail(verifyRequest(auth, r(signed(undefined, now, 'another-secret'))), 403, 'mismatch');
    expectFail(verifyRequest(auth, r({ ...signed(), 'x-hubspot-request-timestamp': String(now + 1) })), 403, 'mismatch');
  });

  it('the URL with the percent-encodings of HubSpot\'s table decoded, the others as called', () => {
    const called = 'https://www.example.com/hook/hs?next=https%3A%2F%2Fa.example%2Fb%3Fc%3Dd&who=%40me%21%24%27%28%29%2a%2C%3B&sp=a%20b';
    const decoded = "https://www.example.com/hook/hs?next=https://a.example/b?c%3Dd&who=@me!$'()*,;&sp=a%20b";
    const headers = { 'x-hubspot-signature-v3': sign('POST', decoded, body, now), 'x-hubspot-request-timestamp': String(now) };
    expect(verifyRequest(auth, r(headers, called)).ok).toBe(true);
    // Signed over the URL as called (not decoded): not HubSpot's signature.
    expectFail(verifyRequest(auth, r({ ...headers, 'x-hubspot-signature-v3': sign('POST', called, body, now) }, called)), 403, 'mismatch');
  });

  it('timestamps in ms, 300 s either way (toleranceSeconds); malformed and missing headers; rotation', () => {
    expect(verifyRequest(auth, r(signed(undefined, now - 299_000))).ok).toBe(true);
    expectFail(verifyRequest(auth, r(signed(undefined, now - 301_000))), 403, 'timestamp');
    expectFail(verifyRequest(auth, r(signed(undefined, now + 301_000))), 403, 'timestamp');
    expectFail(verifyRequest({ ...auth, toleranceSeconds: 60 }, r(signed(undefined, now - 61_000))), 403, 'timestamp');
    expectFail(verifyRequest(auth, r({})), 401, 'missing');
    expectFail(verifyRequest(auth, r({ 'x-hubspot-signature-v3': signed()['x-hubspot-signature-v3'] })), 401, 'malformed');
    expectFail(verifyRequest(auth, r({ ...signed(), 'x-hubspot-request-timestamp': '2026-12-05' })), 401, 'malformed');
    expectFail(verifyRequest(auth, r({ ...signed(), 'x-hubspot-signature-v3': 'abc' })), 401, 'malformed');
    expectFail(verifyRequest(auth, r({ ...signed(), 'x-hubspot-signature-v3': [signed()['x-hubspot-signature-v3'], 'x'] })), 401, 'malformed');
    expect(verifyRequest({ type: 'hubspot', secrets: ['old-secret', secret] }, r(signed()))).toMatchObject({ ok: true, key: 1 });
    // No URL to check against: nothing verifies.
    expectFail(verifyRequest(auth, req({ method: 'POST', headers: signed(), rawBody: Buffer.from(body), now })), 403, 'mismatch');
  });
});

describe('twilio: what the signature does not cover is refused', () => {
  const token = 'twilio-auth-token-0123456789abcdef';
  const auth: WebhookAuth = { type: 'twilio', secrets: [token] };

  it("a body that is neither a form nor bodySHA256's: a GET's signature, or a form's parameters moved into the path, cannot carry one", () => {
    const url = 'https://hooks.example.com/hook/tw?CallSid=CA1&From=%2B1555';
    const getSignature = twilio.getExpectedTwilioSignature(token, url, {});
    for (const type of ['application/json', 'text/plain', 'application/octet-stream']) {
      expectFail(verifyRequest(auth, req({ headers: { 'x-twilio-signature': getSignature, 'content-type': type }, rawBody: Buffer.from('{"evil":true}'), url })), 403, 'mismatch');
    }
    // The form's sorted name+value pairs appended to the path, sent as JSON.
    const params = { AccountSid: 'AC123', MessageStatus: 'delivered' };
    const formSignature = twilio.getExpectedTwilioSignature(token, 'https://hooks.example.com/hook/tw/status', params);
    const forged = 'https://hooks.example.com/hook/tw/statusAccountSidAC123MessageStatusdelivered';
    expectFail(verifyRequest(auth, req({ headers: { 'x-twilio-signature': formSignature, 'content-type': 'application/json' }, rawBody: Buffer.from('{"MessageStatus":"failed"}'), url: forged })), 403, 'mismatch');
    // Without a body, such a request is the GET-like call Twilio signed.
    expect(verifyRequest(auth, req({ headers: { 'x-twilio-signature': getSignature }, url })).ok).toBe(true);
  });

  it('a form too large or with too many parameters is refused before it is sorted; a charset other than UTF-8 too', () => {
    const url = 'https://hooks.example.com/hook/tw';
    const headers = { 'x-twilio-signature': twilio.getExpectedTwilioSignature(token, url, {}), 'content-type': 'application/x-www-form-urlencoded' };
    const big = `Body=${'a'.repeat(128 * 1024)}`;
    const started = performance.now();
    expectFail(verifyRequest(auth, req({ headers, rawBody: Buffer.from(big), url })), 401, 'malformed');
    const many = Array.from({ length: 1001 }, (_, i) => `k${i}=v`).join('&');
    expectFail(verifyRequest(auth, req({ headers, rawBody: Buffer.from(many), url })), 401, 'malformed');
    expect(performance.now() - started).toBeLessThan(500);
    const fine = Array.from({ length: 1000 }, (_, i) => `k${i}=v`).join('&');
    const fineParams = Object.fromEntries(new URLSearchParams(fine));
    expect(verifyRequest(auth, req({ headers: { ...headers, 'x-twilio-signature': twilio.getExpectedTwilioSignature(token, url, fineParams) }, rawBody: Buffer.from(fine), url })).ok).toBe(true);

    const form = 'Body=caf%C3%A9';
    const signature = twilio.getExpectedTwilioSignature(token, url, { Body: 'café' });
    for (const type of ['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=UTF-8', 'application/x-www-form-urlencoded;charset="utf8"']) {
      expect(verifyRequest(auth, req({ headers: { 'x-twilio-signature': signature, 'content-type': type }, rawBody: Buffer.from(form), url })).ok, type).toBe(true);
    }
    for (const type of ['application/x-www-form-urlencoded; charset=iso-8859-1', 'application/x-www-form-urlencoded; charset=utf-16le']) {
      expectFail(verifyRequest(auth, req({ headers: { 'x-twilio-signature': signature, 'content-type': type }, rawBody: Buffer.from(form), url })), 401, 'malformed');
    }
  });

  it("URLs as the SDK also accepts them: normalized, with the legacy querystring's encoding; the first non-empty algorithm", () => {
    const asCalled = "https://hooks.example.com/hook/tw/x?a='b'";
    const escaped = 'https://hooks.example.com/hook/tw/x?a=%27b%27';
    const signature = twilio.getExpectedTwilioSignature(token, escaped, {});
    expect(twilio.validateRequest(token, signature, asCalled, {})).toBe(true);
    expect(verifyRequest(auth, req({ method: 'GET', headers: { 'x-twilio-signature': signature }, url: asCalled })).ok).toBe(true);
    const upper = 'HTTPS://hooks.example.com:443/hook/tw/x';
    const lowerSig = twilio.getExpectedTwilioSignature(token, 'https://hooks.example.com/hook/tw/x', {});
    expect(twilio.validateRequest(token, lowerSig, upper, {})).toBe(true);
    expect(verifyRequest(auth, req({ method: 'GET', headers: { 'x-twilio-signature': lowerSig }, url: upper })).ok).toBe(true);
    const settings = 'algorithm=,algorithm=HMAC_SHA256';
    const sha256 = twilio.getExpectedTwilioSignature(token, escaped, {}, twilio.getSignatureAlgorithm(settings));
    expect(verifyRequest(auth, req({ method: 'GET', headers: { 'x-twilio-signature': sha256, 'x-twilio-webhooks-signature-settings': settings }, url: escaped })).ok).toBe(true);
  });
});
