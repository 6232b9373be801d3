/**
 * Issue 4 over real HTTP: credentials, signatures, secrets at rest and rotation, IP allowlist,
 * TRUST_PROXY, rate limit and CORS — flows made through the admin API, webhook calls sent with
 * node:http so the bytes on the wire are exactly the test's. Provider signatures come from the
 * providers' own libraries (stripe, standardwebhooks, @octokit/webhooks-methods); generic HMAC,
 * Shopify and Slack from node:crypto.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { sign as githubSign } from '@octokit/webhooks-methods';
import { Webhook } from 'standardwebhooks';
import Stripe from 'stripe';
import twilio from 'twilio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningHookd, startHookd, tempDir } from '../helpers/hookd.js';

const stripe = new Stripe('sk_test_not_used_for_network');

// ---------------------------------------------------------------------------------------------
// HTTP

interface Sent {
  method?: string;
  path: string;
  headers?: Record<string, string | string[]>;
  body?: Buffer | string;
  /** Sent one write() each, without Content-Length (chunked transfer). */
  chunks?: Buffer[];
  /** Local address to connect from. */
  localAddress?: string;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

/** One request on its own connection, bytes exactly as given. */
function send(base: string, o: Sent): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: u.port,
        method: o.method ?? 'POST',
        path: o.path,
        headers: o.headers,
        agent: false,
        ...(o.localAddress ? { localAddress: o.localAddress } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode!, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    if (o.chunks) {
      for (const c of o.chunks) req.write(c);
      req.end();
    } else req.end(o.body);
  });
}

/** Header names of a response, without the ones that differ by nature (date). */
const headerNames = (a: Answer) => Object.keys(a.headers).filter((k) => k !== 'date').sort();

/** The error shape of every refused call: `{"error": CODE, "message": …}` and nothing else. */
function expectError(res: Answer, status: number, code: string): void {
  expect(res.status, res.text).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(Object.keys(res.json ?? {}).sort()).toEqual(['error', 'message']);
  expect(res.json.error).toBe(code);
  expect(typeof res.json.message).toBe('string');
}

const rnd = () => randomBytes(12).toString('hex');
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const hmac = (alg: string, key: string | Buffer, data: string | Buffer, enc: 'hex' | 'base64') =>
  createHmac(alg, key).update(data).digest(enc);
const nowSeconds = () => Math.floor(Date.now() / 1000);
const secretOf = (s: string | { value: string }) => (typeof s === 'string' ? s : s.value);

// ---------------------------------------------------------------------------------------------
// hookd

/** A hookd and the helpers bound to it. */
function bind(h: RunningHookd) {
  const hook = (o: Sent) => send(h.url, o);
  return {
    hook,
    async flow(id: string, trigger: Record<string, unknown>) {
      const res = await h.api('POST', '/api/flows', { id, trigger: { type: 'webhook', ...trigger } });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      return res.body;
    },
    async stored(requestId: string) {
      const res = await h.api('GET', `/api/requests/${requestId}`);
      expect(res.status).toBe(200);
      return res.body;
    },
    async storedIds(flowId: string): Promise<string[]> {
      const res = await h.api('GET', `/api/requests?flowId=${encodeURIComponent(flowId)}&limit=1000`);
      expect(res.status).toBe(200);
      return res.body.items.map((m: { id: string }) => m.id).sort();
    },
    /** hookd_ingress_auth_failures_total by reason. */
    async authFailures(): Promise<Record<string, number>> {
      const text = await (await fetch(`${h.url}/metrics`)).text();
      const out: Record<string, number> = {};
      for (const m of text.matchAll(/^hookd_ingress_auth_failures_total\{reason="([^"]+)"\} (\S+)$/gm)) {
        out[m[1]!] = Number(m[2]);
      }
      return out;
    },
  };
}

let h: RunningHookd;
let hook: (o: Sent) => Promise<Answer>;
let flow: ReturnType<typeof bind>['flow'];
let stored: ReturnType<typeof bind>['stored'];
let storedIds: ReturnType<typeof bind>['storedIds'];
let authFailures: ReturnType<typeof bind>['authFailures'];

beforeAll(async () => {
  h = await startHookd({ WORKER_CONCURRENCY: '0' });
  ({ hook, flow, stored, storedIds, authFailures } = bind(h));
});
afterAll(() => h?.close());

/** A webhook call: JSON body when there is one, no body (and no Content-Type) when it is empty. */
function call(flowId: string, method: string, body: string | Buffer, headers: Record<string, string> = {}, query = '') {
  const hasBody = body.length > 0;
  return hook({
    method,
    path: `/hook/${flowId}${query}`,
    headers: { ...(hasBody ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(hasBody ? { body } : {}),
  });
}

/** 200 with a requestId, and the message stored with that method. */
async function expectAccepted(res: Answer, method?: string): Promise<any> {
  expect(res.status, res.text).toBe(200);
  expect(typeof res.json?.requestId).toBe('string');
  const m = await stored(res.json.requestId);
  if (method) expect(m.method).toBe(method);
  return m;
}

const METHODS = ['GET', 'POST', 'PUT'] as const;
const bodyFor = (method: string) => (method === 'GET' ? '' : JSON.stringify({ method, note: 'grüße', n: 1 }));

// ---------------------------------------------------------------------------------------------

describe('auth types and presets', () => {
  it('none (explicit or absent) accepts anyone', async () => {
    await flow('a-none', { auth: { type: 'none' } });
    await flow('a-absent', {});
    for (const id of ['a-none', 'a-absent']) {
      for (const method of METHODS) await expectAccepted(await call(id, method, bodyFor(method)), method);
    }
  });

  describe('basic', () => {
    const user = 'hook-user';
    // A colon and non-ASCII in the password: split at the first colon, UTF-8 (RFC 7617).
    const pass = `pä:ss-${rnd()}`;
    const basic = (u: string, p: string) => `Basic ${b64(`${u}:${p}`)}`;
    beforeAll(() => flow('a-basic', { auth: { type: 'basic', username: user, secrets: [pass] } }));

    it('accepts the right user and password on GET, POST, PUT', async () => {
      for (const method of METHODS) {
        await expectAccepted(await call('a-basic', method, bodyFor(method), { authorization: basic(user, pass) }), method);
      }
    });

    it('401 with a Basic challenge when credentials are missing or not Basic', async () => {
      for (const headers of [{}, { authorization: 'Bearer abc' }, { authorization: 'Basic !!!' }] as Array<Record<string, string>>) {
        const res = await call('a-basic', 'POST', '{}', headers);
        expectError(res, 401, 'UNAUTHORIZED');
        expect(res.headers['www-authenticate']).toBe('Basic realm="hookd"');
      }
    });

    it('403 for a wrong password or a wrong user', async () => {
      expectError(await call('a-basic', 'POST', '{}', { authorization: basic(user, `${pass}x`) }), 403, 'FORBIDDEN');
      // Decided before the body is read: a malformed (or huge XML) body of a caller without valid
      // credentials is never parsed (it was a 400: the body was parsed first).
      expectError(await call('a-basic', 'POST', '{not json', { authorization: basic(user, `${pass}x`) }), 403, 'FORBIDDEN');
      expectError(await hook({ method: 'POST', path: '/hook/a-basic', headers: { 'content-type': 'application/xml', authorization: basic(user, 'nope') }, body: '<a><unclosed>' }), 403, 'FORBIDDEN');
      expectError(await call('a-basic', 'GET', '', { authorization: basic('someone', pass) }), 403, 'FORBIDDEN');
    });
  });

  describe('apiKey', () => {
    const key = `key-${rnd()}`;
    beforeAll(async () => {
      await flow('a-apikey', { auth: { type: 'apiKey', secrets: [key] } });
      await flow('a-apikey-h', { auth: { type: 'apiKey', header: 'X-Partner-Key', secrets: [key] } });
      await flow('a-apikey-q', { auth: { type: 'apiKey', query: 'key', secrets: [key] } });
    });

    it('reads x-api-key by default (any case of the name)', async () => {
      for (const method of METHODS) {
        await expectAccepted(await call('a-apikey', method, bodyFor(method), { 'X-API-Key': key }), method);
      }
      expectError(await call('a-apikey', 'POST', '{}'), 401, 'UNAUTHORIZED');
      expectError(await call('a-apikey', 'POST', '{}', { 'x-api-key': `${key}0` }), 403, 'FORBIDDEN');
      // The key in the query is not where this config looks.
      expectError(await call('a-apikey', 'GET', '', {}, `?x-api-key=${key}`), 401, 'UNAUTHORIZED');
    });

    it('reads a configured header', async () => {
      await expectAccepted(await call('a-apikey-h', 'POST', '{}', { 'x-partner-key': key }));
      expectError(await call('a-apikey-h', 'POST', '{}', { 'x-api-key': key }), 401, 'UNAUTHORIZED');
    });

    it('query variant: ?key=…, the header does not count, a repeated key is malformed', async () => {
      for (const method of METHODS) await expectAccepted(await call('a-apikey-q', method, bodyFor(method), {}, `?key=${key}`), method);
      expectError(await call('a-apikey-q', 'POST', '{}', { 'x-api-key': key }), 401, 'UNAUTHORIZED');
      expectError(await call('a-apikey-q', 'POST', '{}', {}, '?key=nope'), 403, 'FORBIDDEN');
      expectError(await call('a-apikey-q', 'POST', '{}', {}, `?key=${key}&key=${key}`), 401, 'UNAUTHORIZED');
    });
  });

  describe('token', () => {
    const token = `tok-${rnd()}`;
    beforeAll(() => flow('a-token', { auth: { type: 'token', secrets: [token] } }));

    it('?token= and ?secret= on GET, POST, PUT', async () => {
      for (const method of METHODS) {
        await expectAccepted(await call('a-token', method, bodyFor(method), {}, `?token=${token}`), method);
        await expectAccepted(await call('a-token', method, bodyFor(method), {}, `?secret=${token}`), method);
      }
    });

    it('x-webhook-token and Authorization: Bearer headers', async () => {
      await expectAccepted(await call('a-token', 'POST', '{}', { 'x-webhook-token': token }));
      await expectAccepted(await call('a-token', 'PUT', '{}', { authorization: `Bearer ${token}` }));
    });

    it('a top-level token field of a JSON or form body', async () => {
      const j = await expectAccepted(await call('a-token', 'POST', JSON.stringify({ token, order: 7 })));
      expect(j.body).toEqual({ token: '[redacted]', order: 7 });
      const form = await hook({
        method: 'POST',
        path: '/hook/a-token',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `order=7&token=${encodeURIComponent(token)}&text=caf%C3%A9`,
      });
      const f = await expectAccepted(form, 'POST');
      expect(f.body).toEqual({ order: '7', token: '[redacted]', text: 'café' });
      expectError(await call('a-token', 'POST', JSON.stringify({ token: 'wrong-token', order: 7 })), 403, 'FORBIDDEN');
    });

    it('401 without a token, 403 with a wrong one', async () => {
      expectError(await call('a-token', 'POST', '{"order":1}'), 401, 'UNAUTHORIZED');
      expectError(await call('a-token', 'GET', '', {}, '?token=wrong'), 403, 'FORBIDDEN');
      expectError(await call('a-token', 'GET', '', { authorization: 'Bearer wrong' }), 403, 'FORBIDDEN');
    });
  });

  describe('hmac', () => {
    const secret = `hmac-${rnd()}`;
    const configs = [
      { id: 'a-hmac-sha1', auth: { algorithm: 'sha1', encoding: 'hex', header: 'X-Signature', prefix: 'sha1=' } },
      { id: 'a-hmac-sha256', auth: { header: 'X-Sig' } }, // defaults: sha256, hex, no prefix
      { id: 'a-hmac-sha512', auth: { algorithm: 'sha512', encoding: 'base64', header: 'X-Sig-512', prefix: 'v1 ' } },
    ] as const;
    const sig = (c: (typeof configs)[number], body: string, key = secret) => {
      const a = c.auth as { algorithm?: string; encoding?: 'hex' | 'base64'; prefix?: string };
      return `${a.prefix ?? ''}${hmac(a.algorithm ?? 'sha256', key, body, a.encoding ?? 'hex')}`;
    };
    beforeAll(async () => {
      for (const c of configs) await flow(c.id, { auth: { type: 'hmac', ...c.auth, secrets: [secret] } });
    });

    it('sha1/sha256/sha512, hex/base64, with and without prefix: accepted on GET, POST, PUT', async () => {
      for (const c of configs) {
        for (const method of METHODS) {
          const body = bodyFor(method);
          await expectAccepted(await call(c.id, method, body, { [c.auth.header]: sig(c, body) }), method);
        }
      }
    });

    it('the prefix is compared case-insensitively', async () => {
      const c = configs[0];
      await expectAccepted(await call(c.id, 'POST', '{}', { 'x-signature': sig(c, '{}').replace('sha1=', 'SHA1=') }));
    });

    it('rejects a wrong key (403), another body (403), a missing or malformed header (401)', async () => {
      for (const c of configs) {
        const body = '{"a":1}';
        const h = c.auth.header;
        expectError(await call(c.id, 'POST', body, { [h]: sig(c, body, `${secret}x`) }), 403, 'FORBIDDEN');
        expectError(await call(c.id, 'POST', body, { [h]: sig(c, '{"a":2}') }), 403, 'FORBIDDEN');
        expectError(await call(c.id, 'POST', body), 401, 'UNAUTHORIZED');
        // A digest of another algorithm has the wrong length.
        const other = c.id === 'a-hmac-sha256' ? 'sha1' : 'sha256';
        const a = c.auth as { encoding?: 'hex' | 'base64'; prefix?: string };
        expectError(await call(c.id, 'POST', body, { [h]: `${a.prefix ?? ''}${hmac(other, secret, body, a.encoding ?? 'hex')}` }), 401, 'UNAUTHORIZED');
      }
      // Prefix missing.
      expectError(await call('a-hmac-sha1', 'POST', '{}', { 'x-signature': hmac('sha1', secret, '{}', 'hex') }), 401, 'UNAUTHORIZED');
    });
  });

  describe('github', () => {
    const secret = `gh-${rnd()}`;
    beforeAll(() => flow('a-github', { auth: { type: 'github', secrets: [secret] } }));
    /** @octokit/webhooks-methods refuses an empty payload; GET has none, so the same HMAC by hand. */
    const ghSig = async (body: string, key = secret) => (body === '' ? `sha256=${hmac('sha256', key, '', 'hex')}` : githubSign(key, body));

    it('the hand-made empty-body signature is what the library computes', async () => {
      expect(await githubSign(secret, 'x')).toBe(`sha256=${hmac('sha256', secret, 'x', 'hex')}`);
    });

    it('accepts X-Hub-Signature-256 signed by @octokit/webhooks-methods on GET, POST, PUT and PATCH', async () => {
      for (const method of [...METHODS, 'PATCH']) {
        const body = bodyFor(method);
        await expectAccepted(await call('a-github', method, body, { 'x-hub-signature-256': await ghSig(body) }), method);
      }
    });

    it('rejects a wrong secret (403), the SHA-1 header alone (401), no signature (401)', async () => {
      const body = '{"action":"opened"}';
      expectError(await call('a-github', 'POST', body, { 'x-hub-signature-256': await ghSig(body, `${secret}!`) }), 403, 'FORBIDDEN');
      expectError(await call('a-github', 'POST', body, { 'x-hub-signature': `sha1=${hmac('sha1', secret, body, 'hex')}` }), 401, 'UNAUTHORIZED');
      expectError(await call('a-github', 'POST', body), 401, 'UNAUTHORIZED');
    });

    it('checks the signature once the bytes are read, before they are parsed: a bad signature over a malformed body is a 403, not a 400', async () => {
      for (const [type, body] of [['application/json', '{not json'], ['application/xml', '<a><unclosed>'], ['application/x-www-form-urlencoded', 'a=%zz']] as const) {
        const res = await hook({ method: 'POST', path: '/hook/a-github', headers: { 'content-type': type, 'x-hub-signature-256': await ghSig(body, `${secret}!`) }, body });
        expectError(res, 403, 'FORBIDDEN');
      }
      // Signed right, the same malformed body is a 400 with its reason.
      const bad = '{not json';
      expectError(await call('a-github', 'POST', bad, { 'x-hub-signature-256': await ghSig(bad) }), 400, 'INVALID_BODY');
    });
  });

  describe('stripe', () => {
    const secret = `whsec_${rnd()}`;
    const header = (payload: string, timestamp = nowSeconds(), key = secret) =>
      stripe.webhooks.generateTestHeaderString({ payload, secret: key, timestamp });
    beforeAll(async () => {
      await flow('a-stripe', { auth: { type: 'stripe', secrets: [secret] } });
      await flow('a-stripe-60', { auth: { type: 'stripe', secrets: [secret], toleranceSeconds: 60 } });
    });

    it('accepts Stripe-Signature from stripe.webhooks.generateTestHeaderString on GET, POST, PUT', async () => {
      for (const method of METHODS) {
        const body = bodyFor(method);
        await expectAccepted(await call('a-stripe', method, body, { 'stripe-signature': header(body) }), method);
      }
    });

    it('accepts any of several v1 signatures (Stripe rolling its secret)', async () => {
      const body = '{"id":"evt_1","object":"event"}';
      const t = nowSeconds();
      const other = header(body, t, `whsec_${rnd()}`).split(',').find((p) => p.startsWith('v1='))!;
      await expectAccepted(await call('a-stripe', 'POST', body, { 'stripe-signature': `${header(body, t)},${other}` }));
      expectError(await call('a-stripe', 'POST', body, { 'stripe-signature': `t=${t},${other}` }), 403, 'FORBIDDEN');
    });

    it('tolerance (default 300 s): expired and future timestamps are rejected, inside it accepted', async () => {
      const body = '{"id":"evt_2","object":"event"}';
      await expectAccepted(await call('a-stripe', 'POST', body, { 'stripe-signature': header(body, nowSeconds() - 240) }));
      expectError(await call('a-stripe', 'POST', body, { 'stripe-signature': header(body, nowSeconds() - 330) }), 403, 'FORBIDDEN');
      expectError(await call('a-stripe', 'POST', body, { 'stripe-signature': header(body, nowSeconds() + 330) }), 403, 'FORBIDDEN');
      // toleranceSeconds is honoured.
      expectError(await call('a-stripe-60', 'POST', body, { 'stripe-signature': header(body, nowSeconds() - 120) }), 403, 'FORBIDDEN');
      await expectAccepted(await call('a-stripe-60', 'POST', body, { 'stripe-signature': header(body, nowSeconds() - 30) }));
    });

    it("Stripe's retries of one event (its id, in the signed body) are stored and run once", async () => {
      const body = `{"id":"evt_${rnd()}","type":"charge.succeeded"}`;
      const first = await call('a-stripe', 'POST', body, { 'stripe-signature': header(body, nowSeconds()) });
      await expectAccepted(first);
      const retry = await call('a-stripe', 'POST', body, { 'stripe-signature': header(body, nowSeconds() - 5) });
      expect(retry.status).toBe(200);
      expect(retry.json.requestId).toBe(first.json.requestId);
    });

    it('rejects a wrong secret and a timestamp changed after signing', async () => {
      const body = '{"id":"evt_3"}';
      expectError(await call('a-stripe', 'POST', body, { 'stripe-signature': header(body, nowSeconds(), `whsec_${rnd()}`) }), 403, 'FORBIDDEN');
      const t = nowSeconds();
      const moved = header(body, t).replace(`t=${t}`, `t=${t - 1}`);
      expectError(await call('a-stripe', 'POST', body, { 'stripe-signature': moved }), 403, 'FORBIDDEN');
      expectError(await call('a-stripe', 'POST', body, { 'stripe-signature': 'v1=abc' }), 401, 'UNAUTHORIZED');
    });
  });

  describe('paddle', () => {
    const secret = `pdl_ntfset_${rnd()}`;
    const header = (payload: string, ts = nowSeconds(), key = secret) => `ts=${ts};h1=${createHmac('sha256', key).update(`${ts}:${payload}`).digest('hex')}`;
    beforeAll(async () => {
      await flow('a-paddle', { auth: { type: 'paddle', secrets: [secret] } });
    });

    it("accepts Paddle-Signature; refuses a wrong secret, a stale timestamp; Paddle's retries of one notification run once, a replay from Paddle runs again", async () => {
      const event = `evt_${rnd()}`;
      const body = `{"event_id":"${event}","notification_id":"ntf_${rnd()}","event_type":"transaction.completed","data":{}}`;
      const first = await call('a-paddle', 'POST', body, { 'paddle-signature': header(body) });
      await expectAccepted(first);
      const retry = await call('a-paddle', 'POST', body, { 'paddle-signature': header(body, nowSeconds() - 2) });
      expect(retry.json.requestId).toBe(first.json.requestId);
      const replayed = `{"event_id":"${event}","notification_id":"ntf_${rnd()}","event_type":"transaction.completed","data":{}}`;
      const again = await call('a-paddle', 'POST', replayed, { 'paddle-signature': header(replayed) });
      await expectAccepted(again);
      expect(again.json.requestId).not.toBe(first.json.requestId);
      expectError(await call('a-paddle', 'POST', body, { 'paddle-signature': header(body, nowSeconds(), `pdl_ntfset_${rnd()}`) }), 403, 'FORBIDDEN');
      expectError(await call('a-paddle', 'POST', body, { 'paddle-signature': header(body, nowSeconds() - 330) }), 403, 'FORBIDDEN');
      expectError(await call('a-paddle', 'POST', body, {}), 401, 'UNAUTHORIZED');
    });
  });

  describe('twilio', () => {
    const token = `tw_${rnd()}_0123456789`;
    const form = (o: Record<string, string>) => new URLSearchParams(o).toString();
    const sent = (path: string, body: string, signature: string) =>
      hook({ method: 'POST', path, headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature }, body });

    it("Twilio's retries of one webhook (same I-Twilio-Idempotency-Token) are stored and run once; another token is another request", async () => {
      const created = await flow('a-twilio-retries', { auth: { type: 'twilio', secrets: [token] } });
      const params = { MessageSid: `SM${rnd()}`, From: '+15550001111', Body: 'retry me' };
      const body = form(params);
      const signature = twilio.getExpectedTwilioSignature(token, created.webhookUrl, params);
      const send = (headers: Record<string, string>) =>
        hook({ method: 'POST', path: '/hook/a-twilio-retries', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature, ...headers }, body });
      const idem = `${rnd()}-idem`;
      const first = await send({ 'i-twilio-idempotency-token': idem });
      await expectAccepted(first);
      // Twilio's retry: the same token (x-request-id, if any, does not count on such a flow).
      const retry = await send({ 'i-twilio-idempotency-token': idem, 'x-request-id': `other-${rnd()}` });
      expect(retry.status).toBe(200);
      expect(retry.json.requestId).toBe(first.json.requestId);
      const other = await send({ 'i-twilio-idempotency-token': `${rnd()}-idem` });
      await expectAccepted(other);
      expect(other.json.requestId).not.toBe(first.json.requestId);
      // Without a token: x-request-id as on any flow.
      const plain = `tw-plain-${rnd()}`;
      expect((await expectAccepted(await send({ 'x-request-id': plain }))).id).toBe(plain);
      // Three requests stored (one job each), not four.
      const stored = await h.api('GET', '/api/requests?flowId=a-twilio-retries');
      expect(stored.body.items.map((r: { id: string }) => r.id).sort()).toEqual([first.json.requestId, other.json.requestId, plain].sort());
    });

    it("accepts a form signed over the webhook URL as hookd shows it (PUBLIC_URL), path suffix and query included; a proxy's URL with `url`", async () => {
      const created = await flow('a-twilio', { auth: { type: 'twilio', secrets: [token] } });
      const params = { MessageSid: `SM${rnd()}`, From: '+15550001111', Body: 'Grüße & more=yes' };
      const body = form(params);
      // Twilio calls the URL it was given: the flow's webhookUrl, here with a suffix and a query.
      const signedUrl = `${created.webhookUrl}/sms/in?tenant=a%20b`;
      const m = await expectAccepted(await sent('/hook/a-twilio/sms/in?tenant=a%20b', body, twilio.getExpectedTwilioSignature(token, signedUrl, params)));
      expect(m.body).toMatchObject(params);
      // Signed for another path or query, or with another token: refused.
      expectError(await sent('/hook/a-twilio/sms/in?tenant=b', body, twilio.getExpectedTwilioSignature(token, signedUrl, params)), 403, 'FORBIDDEN');
      expectError(await sent('/hook/a-twilio/sms/in?tenant=a%20b', body, twilio.getExpectedTwilioSignature(`tw_${rnd()}_0123456789`, signedUrl, params)), 403, 'FORBIDDEN');
      expectError(await sent('/hook/a-twilio/sms/in?tenant=a%20b', form({ ...params, Body: 'changed' }), twilio.getExpectedTwilioSignature(token, signedUrl, params)), 403, 'FORBIDDEN');
      expectError(await call('a-twilio', 'POST', '{}'), 401, 'UNAUTHORIZED');

      // Behind a proxy that changes the path, the URL configured in Twilio is given as `url`.
      await flow('a-twilio-proxied', { auth: { type: 'twilio', secrets: [token], url: 'https://edge.example.com/twilio/inbound' } });
      const proxied = 'https://edge.example.com/twilio/inbound?tenant=a';
      await expectAccepted(await sent('/hook/a-twilio-proxied?tenant=a', body, twilio.getExpectedTwilioSignature(token, proxied, params)));
      expectError(await sent('/hook/a-twilio-proxied?tenant=a', body, twilio.getExpectedTwilioSignature(token, `${h.url}/hook/a-twilio-proxied?tenant=a`, params)), 403, 'FORBIDDEN');
      // A path after the flow id is part of what Twilio called: `url` stands for …/hook/{flowId} only.
      const suffixed = 'https://edge.example.com/twilio/inbound/status?tenant=a';
      await expectAccepted(await sent('/hook/a-twilio-proxied/status?tenant=a', body, twilio.getExpectedTwilioSignature(token, suffixed, params)));
      expectError(await sent('/hook/a-twilio-proxied/refunds/approve?tenant=a', body, twilio.getExpectedTwilioSignature(token, suffixed, params)), 403, 'FORBIDDEN');
      expectError(await sent('/hook/a-twilio-proxied/refunds?tenant=a', body, twilio.getExpectedTwilioSignature(token, proxied, params)), 403, 'FORBIDDEN');
    });

    it("a body the signature does not cover is refused: a GET's signature, or a form's parameters moved into the path, sent with JSON", async () => {
      const created = await flow('a-twilio-forge', { auth: { type: 'twilio', secrets: [token] } });
      const getUrl = `${created.webhookUrl}?CallSid=CA1&From=%2B1555`;
      const getSignature = twilio.getExpectedTwilioSignature(token, getUrl, {});
      expect((await hook({ method: 'GET', path: '/hook/a-twilio-forge?CallSid=CA1&From=%2B1555', headers: { 'x-twilio-signature': getSignature } })).status).toBe(200);
      expectError(await call('a-twilio-forge', 'POST', '{"evil":true}', { 'x-twilio-signature': getSignature }, '?CallSid=CA1&From=%2B1555'), 403, 'FORBIDDEN');
      const params = { AccountSid: 'AC123', MessageStatus: 'delivered' };
      const formSignature = twilio.getExpectedTwilioSignature(token, `${created.webhookUrl}/status`, params);
      expectError(await call('a-twilio-forge', 'POST', '{"MessageStatus":"failed"}', { 'x-twilio-signature': formSignature }, '/statusAccountSidAC123MessageStatusdelivered'), 403, 'FORBIDDEN');
    });

    it('a JSON event: its body checked against the signed bodySHA256', async () => {
      const created = await flow('a-twilio-json', { auth: { type: 'twilio', secrets: [token] } });
      const body = `{"type":"com.twilio.messaging.message.delivered","id":"${rnd()}"}`;
      const query = `?bodySHA256=${createHash('sha256').update(body).digest('hex')}`;
      const signature = twilio.getExpectedTwilioSignature(token, `${created.webhookUrl}${query}`, {});
      await expectAccepted(await call('a-twilio-json', 'POST', body, { 'x-twilio-signature': signature }, query));
      expectError(await call('a-twilio-json', 'POST', body.replace('delivered', 'failed'), { 'x-twilio-signature': signature }, query), 403, 'FORBIDDEN');
    });
  });

  describe('hubspot', () => {
    const secret = `hs-client-secret-${rnd()}`;
    const headers = (method: string, url: string, body: string, ts = Date.now(), key = secret) => ({
      'x-hubspot-signature-v3': createHmac('sha256', key).update(`${method}${url}${body}${ts}`).digest('base64'),
      'x-hubspot-request-timestamp': String(ts),
    });

    it('accepts signature v3 over method, the URL HubSpot called (PUBLIC_URL), body and timestamp; refuses others', async () => {
      const created = await flow('a-hubspot', { auth: { type: 'hubspot', secrets: [secret] } });
      const body = `[{"eventId":${Date.now()},"subscriptionType":"contact.creation","objectId":1}]`;
      const url = `${created.webhookUrl}?portal=62515`;
      await expectAccepted(await call('a-hubspot', 'POST', body, headers('POST', url, body), '?portal=62515'));
      expectError(await call('a-hubspot', 'POST', body, headers('POST', url, body), '?portal=1'), 403, 'FORBIDDEN');
      expectError(await call('a-hubspot', 'POST', body, headers('POST', url, body, Date.now() - 330_000), '?portal=62515'), 403, 'FORBIDDEN');
      expectError(await call('a-hubspot', 'POST', body, headers('POST', url, body, Date.now(), 'wrong'), '?portal=62515'), 403, 'FORBIDDEN');
      expectError(await call('a-hubspot', 'POST', body, {}, '?portal=62515'), 401, 'UNAUTHORIZED');
      // A GET (workflow webhooks may use one): the method and the query are what is signed.
      await expectAccepted(await call('a-hubspot', 'GET', '', headers('GET', url, ''), '?portal=62515'), 'GET');
    });
  });

  describe('standard-webhooks', () => {
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    const wh = new Webhook(secret);
    const other = new Webhook(`whsec_${randomBytes(24).toString('base64')}`);
    const headers = (body: string, at = new Date(), signers: Webhook[] = [wh], prefix = 'webhook') => {
      const id = `msg_${rnd()}`;
      return {
        [`${prefix}-id`]: id,
        [`${prefix}-timestamp`]: String(Math.floor(at.getTime() / 1000)),
        [`${prefix}-signature`]: signers.map((s) => s.sign(id, at, body)).join(' '),
      };
    };
    beforeAll(() => flow('a-stdwh', { auth: { type: 'standard-webhooks', secrets: [secret] } }));

    it('accepts headers signed by the standardwebhooks library on GET, POST, PUT (and svix-* names)', async () => {
      for (const method of METHODS) {
        const body = bodyFor(method);
        await expectAccepted(await call('a-stdwh', method, body, headers(body)), method);
      }
      await expectAccepted(await call('a-stdwh', 'POST', '{"svix":true}', headers('{"svix":true}', new Date(), [wh], 'svix')));
    });

    it('one event, one request: a repeat of a signed event (a retry, a replay within the tolerance) is stored and run once', async () => {
      const body = '{"type":"invoice.paid","n":1}';
      const hd = headers(body);
      const first = await call('a-stdwh', 'POST', body, hd);
      await expectAccepted(first);
      // Resent with another method, path, query and x-request-id: still that event.
      const again = await hook({ method: 'PUT', path: '/hook/a-stdwh/admin?action=purge', headers: { 'content-type': 'application/json', 'x-request-id': 'chosen-by-replayer', ...hd }, body });
      expect(again.status).toBe(200);
      expect(again.json.requestId).toBe(first.json.requestId);
      expect((await stored(first.json.requestId)).method).toBe('POST');
      expect((await h.api('GET', '/api/requests/chosen-by-replayer')).status).toBe(404);
      // Svix's names: the id that counts is svix-id, which its signature covers; a webhook-id added
      // by whoever resends the request changes nothing.
      const sv = headers(body, new Date(), [wh], 'svix');
      const firstSvix = await call('a-stdwh', 'POST', body, sv);
      await expectAccepted(firstSvix);
      const svixAgain = await call('a-stdwh', 'POST', body, { ...sv, 'webhook-id': `msg_${rnd()}` });
      expect(svixAgain.json.requestId).toBe(firstSvix.json.requestId);
      // The same event fanned out to another flow (another endpoint) is that flow's own request.
      await flow('a-stdwh-2', { auth: { type: 'standard-webhooks', secrets: [secret] } });
      const elsewhere = await call('a-stdwh-2', 'POST', body, hd);
      await expectAccepted(elsewhere);
      expect(elsewhere.json.requestId).not.toBe(first.json.requestId);
    });

    it('several signatures in one header: any v1 may match, other versions are ignored', async () => {
      const body = '{"type":"invoice.paid"}';
      const hd = headers(body, new Date(), [other, wh]);
      hd['webhook-signature'] = `v1a,${randomBytes(32).toString('base64')} ${hd['webhook-signature']}`;
      await expectAccepted(await call('a-stdwh', 'POST', body, hd));
      expectError(await call('a-stdwh', 'POST', body, headers(body, new Date(), [other])), 403, 'FORBIDDEN');
    });

    it('tolerance: an old or a future timestamp is rejected even when signed right', async () => {
      const body = '{"type":"late"}';
      expectError(await call('a-stdwh', 'POST', body, headers(body, new Date(Date.now() - 600_000))), 403, 'FORBIDDEN');
      expectError(await call('a-stdwh', 'POST', body, headers(body, new Date(Date.now() + 600_000))), 403, 'FORBIDDEN');
    });

    it('a webhook-id changed after signing does not verify; a missing id is malformed', async () => {
      const body = '{"type":"x"}';
      const hd = headers(body);
      expectError(await call('a-stdwh', 'POST', body, { ...hd, 'webhook-id': 'msg_other' }), 403, 'FORBIDDEN');
      const { 'webhook-id': _drop, ...noId } = hd;
      expectError(await call('a-stdwh', 'POST', body, noId), 401, 'UNAUTHORIZED');
    });
  });

  describe('shopify', () => {
    const secret = `shpss_${rnd()}`;
    beforeAll(() => flow('a-shopify', { auth: { type: 'shopify', secrets: [secret] } }));

    it('accepts X-Shopify-Hmac-Sha256 (base64) on GET, POST, PUT; rejects wrong and hex', async () => {
      for (const method of METHODS) {
        const body = bodyFor(method);
        await expectAccepted(await call('a-shopify', method, body, { 'x-shopify-hmac-sha256': hmac('sha256', secret, body, 'base64') }), method);
      }
      const body = '{"id":1}';
      expectError(await call('a-shopify', 'POST', body, { 'x-shopify-hmac-sha256': hmac('sha256', 'nope', body, 'base64') }), 403, 'FORBIDDEN');
      expectError(await call('a-shopify', 'POST', body, { 'x-shopify-hmac-sha256': hmac('sha256', secret, body, 'hex') }), 401, 'UNAUTHORIZED');
      expectError(await call('a-shopify', 'POST', body), 401, 'UNAUTHORIZED');
    });

    it("Shopify's retries of one event (same X-Shopify-Event-Id, else X-Shopify-Webhook-Id) are stored and run once", async () => {
      await flow('a-shopify-retries', { auth: { type: 'shopify', secrets: [secret] } });
      const body = `{"id":${Date.now()}}`;
      const signed = { 'x-shopify-hmac-sha256': hmac('sha256', secret, body, 'base64') };
      const event = `${rnd()}-evt`;
      const first = await call('a-shopify-retries', 'POST', body, { ...signed, 'x-shopify-event-id': event, 'x-shopify-webhook-id': `${rnd()}-wh` });
      await expectAccepted(first);
      // A retry, or the webhook of a second subscription to the same event: the same event id.
      const retry = await call('a-shopify-retries', 'POST', body, { ...signed, 'x-shopify-event-id': event, 'x-shopify-webhook-id': `${rnd()}-wh` });
      expect(retry.status).toBe(200);
      expect(retry.json.requestId).toBe(first.json.requestId);
      // Without an event id: the webhook id decides.
      const webhook = `${rnd()}-wh`;
      const a = await call('a-shopify-retries', 'POST', body, { ...signed, 'x-shopify-webhook-id': webhook });
      await expectAccepted(a);
      const b = await call('a-shopify-retries', 'POST', body, { ...signed, 'x-shopify-webhook-id': webhook });
      expect(b.json.requestId).toBe(a.json.requestId);
      expect(a.json.requestId).not.toBe(first.json.requestId);
      const stored = await h.api('GET', '/api/requests?flowId=a-shopify-retries');
      expect(stored.body.items).toHaveLength(2);
    });
  });

  describe('slack', () => {
    const secret = `slack-${rnd()}`;
    const slack = (body: string, ts = nowSeconds(), key = secret) => ({
      'x-slack-request-timestamp': String(ts),
      'x-slack-signature': `v0=${hmac('sha256', key, `v0:${ts}:${body}`, 'hex')}`,
    });
    beforeAll(() => flow('a-slack', { auth: { type: 'slack', secrets: [secret] } }));

    it('accepts v0 signatures on GET, POST (form, as Slack sends), PUT', async () => {
      await expectAccepted(await call('a-slack', 'GET', '', slack('')), 'GET');
      const form = `payload=${encodeURIComponent('{"type":"block_actions"}')}`;
      const res = await hook({ method: 'POST', path: '/hook/a-slack', headers: { 'content-type': 'application/x-www-form-urlencoded', ...slack(form) }, body: form });
      const m = await expectAccepted(res, 'POST');
      expect(m.body).toEqual({ payload: '{"type":"block_actions"}' });
      await expectAccepted(await call('a-slack', 'PUT', '{"x":1}', slack('{"x":1}')), 'PUT');
    });

    it('rejects a wrong secret, a stale timestamp (403) and a missing timestamp (401)', async () => {
      const body = '{"x":2}';
      expectError(await call('a-slack', 'POST', body, slack(body, nowSeconds(), 'other-secret')), 403, 'FORBIDDEN');
      expectError(await call('a-slack', 'POST', body, slack(body, nowSeconds() - 400)), 403, 'FORBIDDEN');
      const { 'x-slack-request-timestamp': _ts, ...noTs } = slack(body);
      expectError(await call('a-slack', 'POST', body, noTs), 401, 'UNAUTHORIZED');
    });
  });

  describe('dedupeBySignature', () => {
    const secret = `dedupe-${rnd()}`;

    it('github: the same signed bytes again (another x-request-id, the signature in upper case) are the first request; other bytes, or a flow without the option, are new ones', async () => {
      await flow('a-dedupe-gh', { auth: { type: 'github', secrets: [secret], dedupeBySignature: true } });
      await flow('a-dedupe-gh-off', { auth: { type: 'github', secrets: [secret] } });
      const body = `{"action":"opened","n":"${rnd()}"}`;
      const sig = await githubSign(secret, body);
      const first = await call('a-dedupe-gh', 'POST', body, { 'x-hub-signature-256': sig, 'x-request-id': `gh-${rnd()}` });
      await expectAccepted(first);
      expect(first.json.requestId).toMatch(/^evt-/);
      const replayed = await call('a-dedupe-gh', 'POST', body, { 'x-hub-signature-256': `sha256=${sig.slice(7).toUpperCase()}`, 'x-request-id': `gh-${rnd()}` });
      expect(replayed.status).toBe(200);
      expect(replayed.json.requestId).toBe(first.json.requestId);
      const other = `{"action":"closed","n":"${rnd()}"}`;
      const second = await call('a-dedupe-gh', 'POST', other, { 'x-hub-signature-256': await githubSign(secret, other) });
      await expectAccepted(second);
      expect(second.json.requestId).not.toBe(first.json.requestId);
      expect(await storedIds('a-dedupe-gh')).toEqual([first.json.requestId, second.json.requestId].sort());
      // The same bytes to another flow: its own request (ids are scoped by flow). Without the
      // option every delivery is a request of its own.
      const off1 = await call('a-dedupe-gh-off', 'POST', body, { 'x-hub-signature-256': sig });
      const off2 = await call('a-dedupe-gh-off', 'POST', body, { 'x-hub-signature-256': sig });
      await expectAccepted(off1);
      await expectAccepted(off2);
      expect(new Set([off1.json.requestId, off2.json.requestId, first.json.requestId]).size).toBe(3);
    });

    it('hmac with base64: the URL-safe and unpadded spellings of one signature are one request', async () => {
      await flow('a-dedupe-hmac', { auth: { type: 'hmac', header: 'X-Sig', encoding: 'base64', secrets: [secret], dedupeBySignature: true } });
      const body = `{"n":"${rnd()}"}`;
      // Bodies until the signature has a '+' or '/' (and padding) to respell.
      let b = body;
      let sig = hmac('sha256', secret, b, 'base64');
      for (let i = 0; !/[+/]/.test(sig); i++) {
        b = `{"n":"${rnd()}","i":${i}}`;
        sig = hmac('sha256', secret, b, 'base64');
      }
      const first = await call('a-dedupe-hmac', 'POST', b, { 'x-sig': sig });
      await expectAccepted(first);
      const respelled = sig.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
      const again = await call('a-dedupe-hmac', 'POST', b, { 'x-sig': respelled });
      expect(again.status, again.text).toBe(200);
      expect(again.json.requestId).toBe(first.json.requestId);
      expect(await storedIds('a-dedupe-hmac')).toEqual([first.json.requestId]);
    });

    it('twilio: the signature wins over I-Twilio-Idempotency-Token, which anyone resending the request can change', async () => {
      const token = `tw_${rnd()}_0123456789`;
      const created = await flow('a-dedupe-twilio', { auth: { type: 'twilio', secrets: [token], dedupeBySignature: true } });
      const params = { MessageSid: `SM${rnd()}`, Body: 'once' };
      const body = new URLSearchParams(params).toString();
      const signature = twilio.getExpectedTwilioSignature(token, created.webhookUrl, params);
      const send = (idem: string) =>
        hook({ method: 'POST', path: '/hook/a-dedupe-twilio', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature, 'i-twilio-idempotency-token': idem }, body });
      const first = await send(`${rnd()}-idem`);
      await expectAccepted(first);
      const again = await send(`${rnd()}-idem`);
      expect(again.status).toBe(200);
      expect(again.json.requestId).toBe(first.json.requestId);
      expect(await storedIds('a-dedupe-twilio')).toEqual([first.json.requestId]);
    });

    it('slack: a replay within the tolerance is the first request; a new timestamp (a new signature) is another', async () => {
      await flow('a-dedupe-slack', { auth: { type: 'slack', secrets: [secret], dedupeBySignature: true } });
      const body = `{"n":"${rnd()}"}`;
      const signed = (ts: number) => ({ 'x-slack-request-timestamp': String(ts), 'x-slack-signature': `v0=${hmac('sha256', secret, `v0:${ts}:${body}`, 'hex')}` });
      const ts = nowSeconds();
      const first = await call('a-dedupe-slack', 'POST', body, signed(ts));
      await expectAccepted(first);
      expect((await call('a-dedupe-slack', 'POST', body, signed(ts))).json.requestId).toBe(first.json.requestId);
      const later = await call('a-dedupe-slack', 'POST', body, signed(ts - 1));
      await expectAccepted(later);
      expect(later.json.requestId).not.toBe(first.json.requestId);
    });

    it('is refused on credentials that sign an event id (stripe) or sign nothing (token)', async () => {
      for (const auth of [{ type: 'stripe', secrets: ['whsec_x'], dedupeBySignature: true }, { type: 'token', secrets: ['t'], dedupeBySignature: true }]) {
        const res = await h.api('POST', '/api/flows', { id: `a-dedupe-no-${auth.type}`, trigger: { type: 'webhook', auth } });
        expect(res.status).toBe(400);
        expect(JSON.stringify(res.body)).toContain('dedupeBySignature');
      }
    });
  });
});

describe('error bodies reveal nothing about the secret', () => {
  it('two different wrong credentials get identical answers that echo neither', async () => {
    const key = `key-${rnd()}`;
    const user = 'u1';
    const pass = `pw-${rnd()}`;
    const secret = `hm-${rnd()}`;
    await flow('e-apikey', { auth: { type: 'apiKey', secrets: [key] } });
    await flow('e-basic', { auth: { type: 'basic', username: user, secrets: [pass] } });
    await flow('e-hmac', { auth: { type: 'hmac', header: 'x-sig', secrets: [secret] } });
    const body = '{"a":1}';
    const good = hmac('sha256', secret, body, 'hex');
    const flipped = (i: number) => good.slice(0, i) + (good[i] === '0' ? '1' : '0') + good.slice(i + 1);
    const pairs: Array<[string, Record<string, string>, Record<string, string>, string[]]> = [
      // Almost right (only the last character wrong) vs. nothing alike, also in length.
      ['e-apikey', { 'x-api-key': `${key.slice(0, -1)}#` }, { 'x-api-key': 'z' }, [key]],
      ['e-basic', { authorization: `Basic ${b64(`${user}:wrong`)}` }, { authorization: `Basic ${b64(`wrong:${pass}`)}` }, [pass, user]],
      ['e-hmac', { 'x-sig': flipped(0) }, { 'x-sig': flipped(63) }, [secret, good]],
    ];
    for (const [id, a, b, secrets] of pairs) {
      const ra = await call(id, 'POST', body, a);
      const rb = await call(id, 'POST', body, b);
      expectError(ra, 403, 'FORBIDDEN');
      expect(rb.text).toBe(ra.text);
      expect(headerNames(rb)).toEqual(headerNames(ra));
      for (const s of [...secrets, ...Object.values(a), ...Object.values(b)]) expect(ra.text).not.toContain(s);
    }
    // Stripe: two wrong secrets.
    await flow('e-stripe', { auth: { type: 'stripe', secrets: [`whsec_${rnd()}`] } });
    const t = nowSeconds();
    const s1 = await call('e-stripe', 'POST', body, { 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: body, secret: 'whsec_a', timestamp: t }) });
    const s2 = await call('e-stripe', 'POST', body, { 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: body, secret: 'whsec_bbbbbbbbbbbb', timestamp: t }) });
    expectError(s1, 403, 'FORBIDDEN');
    expect(s2.text).toBe(s1.text);
  });
});

describe('HEAD on protected flows', () => {
  const user = 'head-user';
  const pass = `head-pass-${rnd()}`;
  const key = `head-key-${rnd()}`;
  const token = `head-token-${rnd()}`;
  const ghSecret = `head-gh-${rnd()}`;
  beforeAll(async () => {
    await flow('hd-basic', { auth: { type: 'basic', username: user, secrets: [pass] } });
    await flow('hd-apikey', { auth: { type: 'apiKey', secrets: [key] } });
    await flow('hd-apiq', { auth: { type: 'apiKey', query: 'k', secrets: [key] } });
    await flow('hd-token', { auth: { type: 'token', secrets: [token] } });
    await flow('hd-github', { auth: { type: 'github', secrets: [ghSecret] } });
  });
  /** The same request to an unknown flow whose id has the same length. */
  const unknownTwin = (id: string) => id.replace(/./g, 'q');

  it('without (or with wrong) credentials answers exactly like an unknown flow', async () => {
    const attempts: Array<[string, Record<string, string>, string]> = [
      ['hd-basic', {}, ''],
      ['hd-basic', { authorization: `Basic ${b64(`${user}:nope`)}` }, ''],
      ['hd-apikey', {}, ''],
      ['hd-apikey', { 'x-api-key': 'nope' }, ''],
      ['hd-apiq', {}, '?k=nope'],
      ['hd-token', {}, ''],
      ['hd-token', {}, '?token=nope'],
      ['hd-github', {}, ''],
      ['hd-github', { 'x-hub-signature-256': `sha256=${hmac('sha256', 'nope', '', 'hex')}` }, ''],
    ];
    for (const [id, headers, query] of attempts) {
      const res = await hook({ method: 'HEAD', path: `/hook/${id}${query}`, headers });
      const twin = await hook({ method: 'HEAD', path: `/hook/${unknownTwin(id)}${query}`, headers });
      expect(twin.status).toBe(404);
      expect(res.status, `${id} ${JSON.stringify(headers)}${query}`).toBe(404);
      expect(res.text).toBe('');
      expect(headerNames(res)).toEqual(headerNames(twin));
      expect(res.headers['content-length']).toBe(twin.headers['content-length']);
      expect(res.headers['www-authenticate']).toBeUndefined();
    }
  });

  it('with valid credentials (header or query) is 200 and stores nothing', async () => {
    const before = await Promise.all(['hd-basic', 'hd-apikey', 'hd-apiq', 'hd-token', 'hd-github'].map(storedIds));
    const ok: Array<[string, Record<string, string>, string]> = [
      ['hd-basic', { authorization: `Basic ${b64(`${user}:${pass}`)}` }, ''],
      ['hd-apikey', { 'x-api-key': key }, ''],
      ['hd-apiq', {}, `?k=${key}`],
      ['hd-token', {}, `?token=${token}`],
      ['hd-token', { authorization: `Bearer ${token}` }, ''],
      // A signature over the empty body.
      ['hd-github', { 'x-hub-signature-256': `sha256=${hmac('sha256', ghSecret, '', 'hex')}` }, ''],
    ];
    for (const [id, headers, query] of ok) {
      const res = await hook({ method: 'HEAD', path: `/hook/${id}${query}`, headers });
      expect(res.status, `${id} ${JSON.stringify(headers)}${query}`).toBe(200);
      expect(res.text).toBe('');
    }
    const after = await Promise.all(['hd-basic', 'hd-apikey', 'hd-apiq', 'hd-token', 'hd-github'].map(storedIds));
    expect(after).toEqual(before);
  });
});

describe('raw bytes', () => {
  /** Bodies a parse + re-serialise round trip would change: signatures must be over the bytes as sent. */
  const BODIES: Record<string, string> = {
    'non-ASCII text': '{"name":"Zoë Ünïcødé","city":"Zürich","emoji":"🚀👍","cjk":"東京", "k": 1}',
    'odd whitespace': '{ "b" :1,\t"a" :  [ 1 ,2 ]\n\n,"c":"  spaced  " }\n\n ',
    CRLF: '{\r\n  "lines": "one\\r\\ntwo",\r\n  "n": 2\r\n}\r\n',
    'key order': '{"b":1,"10":2,"2":3,"a":{"z":0,"1":1},"n":1.50}',
  };
  const hmacSecret = `raw-hmac-${rnd()}`;
  const ghSecret = `raw-gh-${rnd()}`;
  const stripeSecret = `whsec_${rnd()}`;
  const swSecret = `whsec_${randomBytes(24).toString('base64')}`;
  const signers: Record<string, (body: string) => Promise<Record<string, string>>> = {
    'r-hmac': async (b) => ({ 'x-sig': hmac('sha256', hmacSecret, b, 'base64') }),
    'r-github': async (b) => ({ 'x-hub-signature-256': await githubSign(ghSecret, b) }),
    'r-stripe': async (b) => ({ 'stripe-signature': stripe.webhooks.generateTestHeaderString({ payload: b, secret: stripeSecret }) }),
    'r-stdwh': async (b) => {
      const id = `msg_${rnd()}`;
      const at = new Date();
      return { 'webhook-id': id, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(swSecret).sign(id, at, b) };
    },
  };
  beforeAll(async () => {
    await flow('r-hmac', { auth: { type: 'hmac', header: 'x-sig', encoding: 'base64', secrets: [hmacSecret] } });
    await flow('r-github', { auth: { type: 'github', secrets: [ghSecret] } });
    await flow('r-stripe', { auth: { type: 'stripe', secrets: [stripeSecret] } });
    await flow('r-stdwh', { auth: { type: 'standard-webhooks', secrets: [swSecret] } });
  });

  it('the sample bodies really change when re-serialised', () => {
    for (const body of Object.values(BODIES)) expect(JSON.stringify(JSON.parse(body))).not.toBe(body);
  });

  it('signed bodies verify and are stored byte for byte', async () => {
    for (const [flowId, sign] of Object.entries(signers)) {
      for (const [name, text] of Object.entries(BODIES)) {
        const bytes = Buffer.from(text, 'utf8');
        const res = await hook({ method: 'POST', path: `/hook/${flowId}`, headers: { 'content-type': 'application/json', ...(await sign(text)) }, body: bytes });
        expect(res.status, `${flowId} / ${name}: ${res.text}`).toBe(200);
        const m = await stored(res.json.requestId);
        expect(Buffer.from(m.rawBody, 'base64').equals(bytes), `${flowId} / ${name}`).toBe(true);
        expect(m.body).toEqual(JSON.parse(text));
      }
    }
  });

  it('a body that is not UTF-8 verifies on its bytes and is stored as sent', async () => {
    const bytes = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0d, 0x0a, 0xff, 0x00, 0x80]);
    const res = await hook({
      method: 'PUT',
      path: '/hook/r-hmac',
      headers: { 'content-type': 'application/octet-stream', 'x-sig': hmac('sha256', hmacSecret, bytes, 'base64') },
      body: bytes,
    });
    expect(res.status, res.text).toBe(200);
    // A binary body goes to the attachment store: the exact bytes come from the raw route.
    expect((await stored(res.json.requestId)).rawAttachment.size).toBe(bytes.length);
    const raw = await fetch(`${h.url}/api/requests/${res.json.requestId}/raw`, { headers: { authorization: `Bearer ${h.token}` } });
    expect(Buffer.from(await raw.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('a chunked upload split inside a multi-byte character verifies', async () => {
    const bytes = Buffer.from(BODIES['non-ASCII text']!, 'utf8');
    const cut = bytes.indexOf(Buffer.from('🚀')) + 2;
    const res = await hook({
      method: 'POST',
      path: '/hook/r-github',
      headers: { 'content-type': 'application/json', 'x-hub-signature-256': await githubSign(ghSecret, BODIES['non-ASCII text']!) },
      chunks: [bytes.subarray(0, cut), bytes.subarray(cut)],
    });
    expect(res.status, res.text).toBe(200);
    expect(Buffer.from((await stored(res.json.requestId)).rawBody, 'base64').equals(bytes)).toBe(true);
  });
});

describe('rejected requests', () => {
  it('are not stored and are counted in hookd_ingress_auth_failures_total by reason', async () => {
    const secret = `whsec_${rnd()}`;
    await flow('x-stripe', { auth: { type: 'stripe', secrets: [secret] } });
    const body = '{"id":"evt"}';
    const sig = (key: string, t = nowSeconds()) => stripe.webhooks.generateTestHeaderString({ payload: body, secret: key, timestamp: t });
    await expectAccepted(await call('x-stripe', 'POST', body, { 'stripe-signature': sig(secret) }));
    const ids = await storedIds('x-stripe');
    expect(ids).toHaveLength(1);
    const before = await authFailures();

    expectError(await call('x-stripe', 'POST', body), 401, 'UNAUTHORIZED'); // missing
    expectError(await call('x-stripe', 'POST', body, { 'stripe-signature': 'garbage' }), 401, 'UNAUTHORIZED'); // malformed
    expectError(await call('x-stripe', 'POST', body, { 'stripe-signature': sig(`whsec_${rnd()}`) }), 403, 'FORBIDDEN'); // mismatch
    expectError(await call('x-stripe', 'PUT', body, { 'stripe-signature': sig(`whsec_${rnd()}`) }), 403, 'FORBIDDEN'); // mismatch
    expectError(await call('x-stripe', 'POST', body, { 'stripe-signature': sig(secret, nowSeconds() - 3600) }), 403, 'FORBIDDEN'); // timestamp
    expect((await call('x-stripe', 'HEAD', '')).status).toBe(404); // missing: answered as unknown, counted all the same

    expect(await storedIds('x-stripe')).toEqual(ids);
    const after = await authFailures();
    const delta = (r: string) => (after[r] ?? 0) - (before[r] ?? 0);
    expect({ missing: delta('missing'), malformed: delta('malformed'), mismatch: delta('mismatch'), timestamp: delta('timestamp') }).toEqual({
      missing: 2,
      malformed: 1,
      mismatch: 2,
      timestamp: 1,
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe('secrets at rest, masking, redaction, restart, rotation', () => {
  let dir: string;
  let s: RunningHookd;
  let sx: ReturnType<typeof bind>;
  const user = 'rest-user';
  const pass = `rest-pass-${rnd()}`;
  const token = `rest-token-${rnd()}`;
  const key = `rest-key-${rnd()}`;
  const canary = `canary-${rnd()}`;

  beforeAll(async () => {
    dir = tempDir();
    s = await startHookd({ DATA_DIR: dir, WORKER_CONCURRENCY: '0' });
    sx = bind(s);
  });
  afterAll(async () => {
    await s?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Every byte hookd keeps in DATA_DIR's database: the main file and the WAL. */
  const dbBytes = () =>
    Buffer.concat(['hookd.db', 'hookd.db-wal'].map((f) => path.join(dir, f)).filter(existsSync).map((f) => readFileSync(f)));

  it('the create response shows the secret once; GET shows only a masked hint', async () => {
    const created = await sx.flow('s-basic', { auth: { type: 'basic', username: user, secrets: [pass] } });
    expect(created.trigger.auth.secrets.map(secretOf)).toEqual([pass]);
    for (const view of [(await s.api('GET', '/api/flows/s-basic')).body, (await s.api('GET', '/api/flows')).body]) {
      const text = JSON.stringify(view);
      expect(text).not.toContain(pass);
      expect(text).toContain(`…${pass.slice(-4)}`);
    }
    const got = (await s.api('GET', '/api/flows/s-basic')).body;
    expect(got.trigger.auth.secrets.map(secretOf)).toEqual([`…${pass.slice(-4)}`]);
    expect(got.trigger.auth.username).toBe(user);
  });

  it('credentials are [redacted] in stored headers, query and body', async () => {
    await sx.flow('s-token', { auth: { type: 'token', secrets: [token] } });
    await sx.flow('s-apikey', { auth: { type: 'apiKey', header: 'x-key', query: 'key', secrets: [key] } });
    const sent: Answer[] = [
      await send(s.url, { method: 'POST', path: `/hook/s-token?token=${token}&keep=1`, headers: { 'content-type': 'application/json' }, body: `{"token":"${token}","note":"${canary}"}` }),
      await send(s.url, { method: 'POST', path: '/hook/s-token', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-webhook-token': token }, body: `token=${token}&note=${canary}` }),
      await send(s.url, { method: 'GET', path: `/hook/s-token?secret=${token}`, headers: { authorization: `Bearer ${token}` } }),
      await send(s.url, { method: 'PUT', path: `/hook/s-apikey?key=${key}`, headers: { 'content-type': 'application/json', 'x-key': key }, body: `{"note":"${canary}"}` }),
      await send(s.url, { method: 'POST', path: '/hook/s-basic', headers: { 'content-type': 'text/plain', authorization: `Basic ${b64(`${user}:${pass}`)}` }, body: canary }),
    ];
    const messages = [];
    for (const res of sent) {
      expect(res.status, res.text).toBe(200);
      messages.push(await sx.stored(res.json.requestId));
    }
    const [jsonBody, formBody, get, apiKey, basic] = messages;
    expect(jsonBody.query).toEqual({ token: '[redacted]', keep: '1' });
    expect(jsonBody.body).toEqual({ token: '[redacted]', note: canary });
    expect(formBody.headers['x-webhook-token']).toBe('[redacted]');
    expect(formBody.body).toEqual({ token: '[redacted]', note: canary });
    // A body credential would stay readable in the raw bytes: they are rebuilt from the redacted body.
    expect(Buffer.from(jsonBody.rawBody, 'base64').toString('utf8')).toBe(JSON.stringify({ token: '[redacted]', note: canary }));
    expect(Buffer.from(formBody.rawBody, 'base64').toString('utf8')).toBe(`token=%5Bredacted%5D&note=${canary}`);
    // Bodies without a credential field keep their exact bytes.
    expect(Buffer.from(apiKey.rawBody, 'base64').toString('utf8')).toBe(`{"note":"${canary}"}`);
    expect(get.query).toEqual({ secret: '[redacted]' });
    expect(get.headers.authorization).toBe('[redacted]');
    expect(apiKey.query).toEqual({ key: '[redacted]' });
    expect(apiKey.headers['x-key']).toBe('[redacted]');
    expect(basic.headers.authorization).toBe('[redacted]');
    for (const m of messages) {
      const text = JSON.stringify(m) + Buffer.from(m.rawBody, 'base64').toString('latin1');
      for (const secret of [token, key, pass, b64(`${user}:${pass}`)]) expect(text).not.toContain(secret);
    }
  });

  it('no secret is in the SQLite file or its WAL in plain (while stored data is)', async () => {
    const bytes = dbBytes();
    // The search works: what was stored in plain is found.
    expect(bytes.includes(Buffer.from(canary))).toBe(true);
    for (const secret of [pass, token, key, b64(`${user}:${pass}`)]) expect(bytes.includes(Buffer.from(secret)), secret).toBe(false);
  });

  it('the master key file is 0600', () => {
    expect(statSync(path.join(dir, 'secret.key')).mode & 0o777).toBe(0o600);
  });

  it('PUT with the masked hint keeps the secret; PUT with a new secret replaces it', async () => {
    const got = (await s.api('GET', '/api/flows/s-basic')).body;
    const put = await s.api('PUT', '/api/flows/s-basic', { name: 'renamed', trigger: got.trigger });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(JSON.stringify(put.body)).not.toContain(pass);
    expect(put.body.name).toBe('renamed');
    const ok = await send(s.url, { method: 'GET', path: '/hook/s-basic', headers: { authorization: `Basic ${b64(`${user}:${pass}`)}` } });
    expect(ok.status, ok.text).toBe(200);
    // The hint itself is not a password.
    const hint = secretOf(got.trigger.auth.secrets[0]);
    expectError(await send(s.url, { method: 'GET', path: '/hook/s-basic', headers: { authorization: `Basic ${b64(`${user}:${hint}`)}` } }), 403, 'FORBIDDEN');

    await sx.flow('s-put', { auth: { type: 'apiKey', secrets: [`old-${key}`] } });
    const replaced = await s.api('PUT', '/api/flows/s-put', { trigger: { type: 'webhook', auth: { type: 'apiKey', secrets: [`new-${key}`] } } });
    expect(replaced.status).toBe(200);
    expect(replaced.body.trigger.auth.secrets.map(secretOf)).toEqual([`new-${key}`]); // new: shown once
    expect((await send(s.url, { method: 'GET', path: '/hook/s-put', headers: { 'x-api-key': `new-${key}` } })).status).toBe(200);
    expect((await send(s.url, { method: 'GET', path: '/hook/s-put', headers: { 'x-api-key': `old-${key}` } })).status).toBe(403);
  });

  it('GET then PUT of the same trigger keeps every secret, whatever its format or length', async () => {
    // A Standard Webhooks key masks to `whsec_…abcd`, which is no key; two short secrets both mask to `…`.
    const sw = [`whsec_${randomBytes(24).toString('base64')}`, `whsec_${randomBytes(24).toString('base64')}`];
    await sx.flow('s-roundtrip-sw', { auth: { type: 'standard-webhooks', secrets: sw } });
    await sx.flow('s-roundtrip-short', { auth: { type: 'apiKey', secrets: ['short-key-1', 'short-key-2'] } });
    for (const [id, plain] of [['s-roundtrip-sw', sw], ['s-roundtrip-short', ['short-key-1', 'short-key-2']]] as const) {
      const got = (await s.api('GET', `/api/flows/${id}`)).body;
      const put = await s.api('PUT', `/api/flows/${id}`, { trigger: got.trigger });
      expect(put.status, JSON.stringify(put.body)).toBe(200);
      expect(JSON.stringify(put.body), 'kept secrets are not shown again').not.toContain(plain[0]);
      expect((await s.api('GET', `/api/flows/${id}`)).body.trigger).toEqual(got.trigger);
    }
    for (const key of ['short-key-1', 'short-key-2']) {
      expect((await send(s.url, { method: 'GET', path: '/hook/s-roundtrip-short', headers: { 'x-api-key': key } })).status, key).toBe(200);
    }
    // A hint this flow does not hold would become the secret itself: refused.
    const copy = (await s.api('GET', '/api/flows/s-roundtrip-sw')).body;
    const refused = await s.api('PUT', '/api/flows/s-roundtrip-copy', { trigger: copy.trigger });
    expect(refused.status).toBe(400);
    expect(refused.body.message).toMatch(/\/trigger\/auth\/secrets\/0: "whsec_….{4}" is a masked secret this flow does not hold/);
    expect((await s.api('GET', '/api/flows/s-roundtrip-copy')).status).toBe(404);
  });

  let rotated = '';
  let oldSw = '';
  it('rotation: a generated second secret (returned once), both verify, then the old is deleted', async () => {
    oldSw = `whsec_${randomBytes(24).toString('base64')}`;
    await sx.flow('s-rotate', { auth: { type: 'standard-webhooks', secrets: [oldSw] } });
    const signed = (secret: string, body = '{"rotate":true}') => {
      const id = `msg_${rnd()}`;
      const at = new Date();
      return send(s.url, {
        method: 'POST',
        path: '/hook/s-rotate',
        headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(secret).sign(id, at, body) },
        body,
      });
    };
    expect((await signed(oldSw)).status).toBe(200);

    const added = await s.api('POST', '/api/flows/s-rotate/secrets');
    expect(added.status, JSON.stringify(added.body)).toBe(201);
    const secrets = added.body.trigger.auth.secrets;
    expect(secrets).toHaveLength(2);
    expect(secretOf(secrets[0])).not.toBe(oldSw); // the old one stays masked
    rotated = secretOf(secrets[1]);
    expect(rotated).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/); // a key the provider library can use
    expect(secrets[1].createdAt).toEqual(expect.any(String));
    // Shown once: GET masks both.
    const got = JSON.stringify((await s.api('GET', '/api/flows/s-rotate')).body);
    expect(got).not.toContain(rotated);
    expect(got).not.toContain(oldSw);

    expect((await signed(oldSw)).status).toBe(200);
    expect((await signed(rotated)).status).toBe(200);
    // A third is refused while two are active.
    expect((await s.api('POST', '/api/flows/s-rotate/secrets', { secret: 'a-third-secret' })).status).toBe(409);

    const del = await s.api('DELETE', '/api/flows/s-rotate/secrets/0');
    expect(del.status, JSON.stringify(del.body)).toBe(200);
    expect(del.body.trigger.auth.secrets).toHaveLength(1);
    expectError(await signed(oldSw), 403, 'FORBIDDEN');
    expect((await signed(rotated)).status).toBe(200);
    // The last secret cannot go.
    expect((await s.api('DELETE', '/api/flows/s-rotate/secrets/0')).status).toBe(409);
    expect(dbBytes().includes(Buffer.from(rotated))).toBe(false);
  });

  it('after a restart on the same DATA_DIR the sealed secrets still verify', async () => {
    await s.close();
    s = await startHookd({ DATA_DIR: dir, WORKER_CONCURRENCY: '0' });
    const basic = (p: string) => send(s.url, { method: 'POST', path: '/hook/s-basic', headers: { authorization: `Basic ${b64(`${user}:${p}`)}` } });
    expect((await basic(pass)).status).toBe(200);
    expectError(await basic('wrong'), 403, 'FORBIDDEN');
    expect((await send(s.url, { method: 'GET', path: `/hook/s-token?token=${token}` })).status).toBe(200);
    const id = `msg_${rnd()}`;
    const at = new Date();
    const sw = await send(s.url, {
      method: 'POST',
      path: '/hook/s-rotate',
      headers: { 'webhook-id': id, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(rotated).sign(id, at, '') },
    });
    expect(sw.status, sw.text).toBe(200);
    expect(JSON.stringify((await s.api('GET', '/api/flows/s-basic')).body)).not.toContain(pass);
  });
});

// ---------------------------------------------------------------------------------------------

describe('IP allowlist', () => {
  it('an IPv4 CIDR holding 127.0.0.1 allows; another one answers 403 IP_NOT_ALLOWED, unstored and counted', async () => {
    const key = `ip-key-${rnd()}`;
    await flow('ip-ok', { auth: { type: 'apiKey', secrets: [key] }, ipAllowlist: ['10.0.0.0/8', '127.0.0.0/8'] });
    await flow('ip-no', { auth: { type: 'apiKey', secrets: [key] }, ipAllowlist: ['10.0.0.0/8', '192.168.1.1'] });
    const m = await expectAccepted(await call('ip-ok', 'POST', '{}', { 'x-api-key': key }));
    expect(m.clientIp).toBe('127.0.0.1');
    const before = await authFailures();
    // Valid credentials do not help; X-Forwarded-For is not believed without TRUST_PROXY.
    expectError(await call('ip-no', 'POST', '{}', { 'x-api-key': key }), 403, 'IP_NOT_ALLOWED');
    expectError(await call('ip-no', 'GET', '', { 'x-api-key': key, 'x-forwarded-for': '10.1.2.3' }), 403, 'IP_NOT_ALLOWED');
    expect(await storedIds('ip-no')).toEqual([]);
    expect(((await authFailures()).ip ?? 0) - (before.ip ?? 0)).toBe(2);
  });

  it('IPv6: ::1/128 allows a ::1 client; the IPv4-mapped form matches IPv4 ranges', async () => {
    // '::' is dual-stack: a ::1 client is seen as ::1, a 127.0.0.1 client as ::ffff:127.0.0.1.
    const v6 = await startHookd({ LISTEN_HOST: '::', WORKER_CONCURRENCY: '0' });
    try {
      const x = bind(v6);
      await x.flow('v6-only', { ipAllowlist: ['::1/128'] });
      await x.flow('v4-only', { ipAllowlist: ['127.0.0.1/32'] });
      await x.flow('v4-mapped', { ipAllowlist: ['::ffff:127.0.0.0/104'] });
      const port = new URL(v6.url).port;
      const viaV6 = (id: string) => send(`http://[::1]:${port}`, { method: 'POST', path: `/hook/${id}` });
      const viaV4 = (id: string) => send(`http://127.0.0.1:${port}`, { method: 'POST', path: `/hook/${id}` });

      const ok6 = await viaV6('v6-only');
      expect(ok6.status, ok6.text).toBe(200);
      expect((await x.stored(ok6.json.requestId)).clientIp).toBe('::1');
      expectError(await viaV4('v6-only'), 403, 'IP_NOT_ALLOWED');

      expect((await viaV4('v4-only')).status).toBe(200);
      expectError(await viaV6('v4-only'), 403, 'IP_NOT_ALLOWED');
      expect((await viaV4('v4-mapped')).status).toBe(200);
      expectError(await viaV6('v4-mapped'), 403, 'IP_NOT_ALLOWED');
    } finally {
      await v6.close();
    }
  });

  it('TRUST_PROXY: the allowlist judges the forwarded client', async () => {
    const p = await startHookd({ TRUST_PROXY: '127.0.0.1', WORKER_CONCURRENCY: '0' });
    try {
      const x = bind(p);
      await x.flow('behind-proxy', { ipAllowlist: ['203.0.113.0/24'] });
      const via = (xff?: string) =>
        send(p.url, { method: 'POST', path: '/hook/behind-proxy', headers: xff === undefined ? {} : { 'x-forwarded-for': xff } });
      const ok = await via('203.0.113.9');
      expect(ok.status, ok.text).toBe(200);
      expect((await x.stored(ok.json.requestId)).clientIp).toBe('203.0.113.9');
      // The nearest untrusted hop is the client: a left-most spoofed entry does not help.
      expect((await via('198.51.100.4, 203.0.113.10')).status).toBe(200);
      expectError(await via('203.0.113.9, 198.51.100.4'), 403, 'IP_NOT_ALLOWED');
      expectError(await via('198.51.100.4'), 403, 'IP_NOT_ALLOWED');
      // The proxy itself is not in the list.
      expectError(await via(), 403, 'IP_NOT_ALLOWED');
    } finally {
      await p.close();
    }
  });
});

describe('rate limit', () => {
  it('burst 3, 1/s: the 4th call is 429 with Retry-After; after waiting it works again', async () => {
    await flow('rl', { rateLimit: { burst: 3, perSecond: 1 } });
    const before = await authFailures();
    const ids0 = await storedIds('rl');
    for (let i = 0; i < 3; i++) expect((await call('rl', 'POST', `{"i":${i}}`)).status).toBe(200);
    const limited = await call('rl', 'POST', '{"i":3}');
    expectError(limited, 429, 'RATE_LIMITED');
    const retryAfter = Number(limited.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(2);
    expect((await storedIds('rl')).length).toBe(ids0.length + 3);
    await new Promise((r) => setTimeout(r, retryAfter * 1000 + 50));
    expect((await call('rl', 'POST', '{"i":4}')).status).toBe(200);
    expectError(await call('rl', 'POST', '{"i":5}'), 429, 'RATE_LIMITED');
    expect(((await authFailures()).rate ?? 0) - (before.rate ?? 0)).toBe(2);
  });

  it("a protected flow's rate is spent by callers whose credentials verify; guessers (and probes) are limited per address, never locking the sender out", async () => {
    // Two clients behind a trusted proxy: a guesser and the real sender.
    const app = await startHookd({ WORKER_CONCURRENCY: '0', TRUST_PROXY: '127.0.0.1' });
    try {
      const made = await app.api('PUT', '/api/flows/rl-basic', { trigger: { type: 'webhook', auth: { type: 'basic', username: 'u', secrets: ['right-password'] }, rateLimit: { burst: 3, perSecond: 0.001 } } });
      expect(made.status).toBe(201);
      const send = (from: string, password: string, method = 'POST') =>
        fetch(`${app.url}/hook/rl-basic`, {
          method,
          headers: { 'content-type': 'application/json', 'x-forwarded-for': from, authorization: `Basic ${Buffer.from(`u:${password}`).toString('base64')}` },
          ...(method === 'HEAD' ? {} : { body: '{}' }),
        });
      // The guesser: its failures take its own tokens; past the burst it is throttled (probes too).
      const guesses = [];
      for (let i = 0; i < 5; i++) guesses.push((await send('10.0.0.66', `guess-${i}`)).status);
      expect(guesses).toEqual([403, 403, 403, 429, 429]);
      expect((await send('10.0.0.66', 'right-password', 'HEAD')).status).toBe(404); // a throttled probe stays a 404
      // Another address of its /64 is the same client.
      expect((await send('2001:db8:1:2::66', 'guess')).status).toBe(403);
      for (let i = 0; i < 2; i++) await send(`2001:db8:1:2::${i + 1}`, 'guess');
      expect((await send('2001:db8:1:2:ffff::9', 'guess')).status).toBe(429);
      // The sender is untouched by all that: its burst is whole.
      for (let i = 0; i < 3; i++) expect((await send('10.0.0.7', 'right-password')).status, `call ${i}`).toBe(200);
      expect((await send('10.0.0.7', 'right-password')).status).toBe(429); // its own burst, used up by itself
    } finally {
      await app.close();
    }
  });

  it('a refused signed call costs nothing to a later good one (a signature cannot be guessed): no per-address throttle on signature flows', async () => {
    const secret = `rl-${rnd()}`;
    await flow('rl-gh', { auth: { type: 'github', secrets: [secret] }, rateLimit: { burst: 3, perSecond: 0.001 } });
    for (let i = 0; i < 6; i++) expectError(await call('rl-gh', 'POST', '{}', { 'x-hub-signature-256': 'sha256=' + '0'.repeat(64) }), 403, 'FORBIDDEN');
    const body = '{"i":1}';
    expect((await call('rl-gh', 'POST', body, { 'x-hub-signature-256': `sha256=${hmac('sha256', secret, body, 'hex')}` })).status).toBe(200);
  });
});

describe('CORS', () => {
  const origin = 'https://app.example.com';
  const secret = `cors-${rnd()}`;
  beforeAll(() => flow('c-github', { auth: { type: 'github', secrets: [secret] }, cors: { origins: [origin], headers: ['X-Extra'] } }));

  const preflight = (id: string, o: string, method = 'POST') =>
    hook({
      method: 'OPTIONS',
      path: `/hook/${id}`,
      headers: { origin: o, 'access-control-request-method': method, 'access-control-request-headers': 'content-type, x-hub-signature-256' },
    });

  it('a preflight from an allowed origin is 204 with the scheme’s signature header allowed', async () => {
    const res = await preflight('c-github', origin);
    expect(res.status, res.text).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe(origin);
    const allowed = String(res.headers['access-control-allow-headers']).split(/,\s*/);
    expect(allowed).toEqual(expect.arrayContaining(['content-type', 'x-hub-signature-256', 'x-extra']));
    expect(String(res.headers['access-control-allow-methods'])).toContain('POST');
    expect(res.headers['access-control-max-age']).toBe('600');
    expect(res.headers.vary).toMatch(/origin/i);
  });

  it('a disallowed origin, a disallowed method or a flow without CORS answers like an unknown flow', async () => {
    const twin = await preflight('q-qqqqqq', origin);
    expect(twin.status).toBe(404);
    for (const res of [await preflight('c-github', 'https://evil.example.com'), await preflight('c-github', origin, 'DELETE'), await preflight('a-github', origin)]) {
      expect(res.status).toBe(404);
      expect(Object.keys(res.json)).toEqual(['error']);
      expect(res.json.error).toMatch(/^Flow (c|a)-github either does not exist or is inactive\.$/);
      expect(headerNames(res)).toEqual(headerNames(twin));
      expect(res.headers['access-control-allow-origin']).toBeUndefined();
    }
  });

  it('the actual call carries access-control-allow-origin (errors too); another origin gets none', async () => {
    const body = '{"browser":true}';
    const ok = await call('c-github', 'POST', body, { origin, 'x-hub-signature-256': await githubSign(secret, body) });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe(origin);
    expect(String(ok.headers['access-control-expose-headers'])).toContain('x-request-id');
    const bad = await call('c-github', 'POST', body, { origin, 'x-hub-signature-256': await githubSign('nope', body) });
    expectError(bad, 403, 'FORBIDDEN');
    expect(bad.headers['access-control-allow-origin']).toBe(origin);
    const other = await call('c-github', 'POST', body, { origin: 'https://evil.example.com', 'x-hub-signature-256': await githubSign(secret, body) });
    expect(other.status).toBe(200);
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('HEAD without credentials on a CORS flow still looks like an unknown flow', async () => {
    const res = await hook({ method: 'HEAD', path: '/hook/c-github', headers: { origin } });
    const twin = await hook({ method: 'HEAD', path: '/hook/q-qqqqqq', headers: { origin } });
    expect(res.status).toBe(404);
    expect(headerNames(res)).toEqual(headerNames(twin));
  });
});
