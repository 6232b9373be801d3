/**
 * Providers' subscription handshakes (trigger.handshake): the value echoed as the provider checks
 * it, nothing stored and nothing run; unsigned ones answered before credentials, Slack's and Zoom's after.
 */
import { createHmac } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCall, type RunningHookd, startHookd } from '../helpers/hookd.js';

let h: RunningHookd;
const slackSecret = 'slack-signing-secret-0123';
const githubSecret = 'meta-app-secret-0123456789';
const dropboxSecret = 'dropbox-app-secret-012345';
const zoomSecret = 'zoom-secret-token-0123456';
const oktaSecret = 'okta-shared-secret-0123456';

beforeAll(async () => {
  h = await startHookd({ WORKER_CONCURRENCY: '0', HOOKD_READ_TOKENS: 'handshake-reader-0123456789' });
  const put = async (id: string, trigger: Record<string, unknown>) =>
    expect((await h.api('PUT', `/api/flows/${id}`, { trigger: { type: 'webhook', ...trigger }, steps: [] })).status).toBe(201);
  await put('slack', { auth: { type: 'slack', secrets: [slackSecret] }, handshake: { type: 'slack' } });
  // Meta signs its event POSTs like GitHub (X-Hub-Signature-256 with the app secret).
  await put('meta', { auth: { type: 'github', secrets: [githubSecret] }, handshake: { type: 'meta', verifyToken: 'my-verify-token' } });
  await put('graph', { handshake: { type: 'microsoft-graph' } });
  await put('dropbox', { auth: { type: 'hmac', header: 'X-Dropbox-Signature', secrets: [dropboxSecret] }, handshake: { type: 'dropbox' } });
  await put('plain', {});
  await put('zoom', { auth: { type: 'zoom', secrets: [zoomSecret] }, handshake: { type: 'zoom' } });
  // Okta event hooks send the hook's Authorization header value as it is (no scheme), the verification GET included.
  await put('okta', { auth: { type: 'apiKey', header: 'Authorization', secrets: [oktaSecret] }, handshake: { type: 'okta' } });
  await put('okta-open', { handshake: { type: 'okta' } });
  // Rate-limited: handshakes spend the flow's rate; wrong verify tokens a bucket of their own per client.
  await put('dropbox-limited', { auth: { type: 'hmac', header: 'X-Dropbox-Signature', secrets: [dropboxSecret] }, handshake: { type: 'dropbox' }, rateLimit: { perSecond: 0.01, burst: 2 } });
});
afterAll(() => h.close());

const storedCount = async (flowId: string) => ((await h.api('GET', `/api/requests?flowId=${flowId}`)).body.items as unknown[]).length;
const text = async (res: Response) => ({ status: res.status, type: res.headers.get('content-type'), nosniff: res.headers.get('x-content-type-options'), body: await res.text() });

describe('trigger.handshake', () => {
  it('slack: a signed url_verification gets its challenge back and is not stored; unsigned it is refused; events are stored', async () => {
    const sign = (body: string, ts = Math.floor(Date.now() / 1000)) => ({
      'content-type': 'application/json',
      'x-slack-request-timestamp': String(ts),
      'x-slack-signature': `v0=${createHmac('sha256', slackSecret).update(`v0:${ts}:${body}`).digest('hex')}`,
    });
    const verification = JSON.stringify({ token: 'legacy', challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P', type: 'url_verification' });
    const ok = await text(await fetch(`${h.url}/hook/slack`, { method: 'POST', headers: sign(verification), body: verification }));
    expect(ok).toEqual({ status: 200, type: 'text/plain; charset=utf-8', nosniff: 'nosniff', body: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P' });
    const long = JSON.stringify({ type: 'url_verification', challenge: 'c'.repeat(2049) });
    expect((await fetch(`${h.url}/hook/slack`, { method: 'POST', headers: sign(long), body: long })).status).toBe(400);
    const unsigned = await fetch(`${h.url}/hook/slack`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: verification });
    expect(unsigned.status).toBe(401);
    expect(await storedCount('slack')).toBe(0);
    const event = JSON.stringify({ type: 'event_callback', event: { type: 'message' } });
    expect((await fetch(`${h.url}/hook/slack`, { method: 'POST', headers: sign(event), body: event })).status).toBe(200);
    expect(await storedCount('slack')).toBe(1);
  });

  it('zoom: a signed endpoint.url_validation gets {plainToken, encryptedToken} (HMAC-SHA256 under the secret token); events verify with the zoom preset', async () => {
    const sign = (body: string, ts = Math.floor(Date.now() / 1000)) => ({
      'content-type': 'application/json; charset=utf-8',
      'x-zm-request-timestamp': String(ts),
      'x-zm-signature': `v0=${createHmac('sha256', zoomSecret).update(`v0:${ts}:${body}`).digest('hex')}`,
    });
    const validation = JSON.stringify({ payload: { plainToken: 'qgg8vlvZRS6UYooatFL8Aw' }, event_ts: 1654503849680, event: 'endpoint.url_validation' });
    const res = await fetch(`${h.url}/hook/zoom`, { method: 'POST', headers: sign(validation), body: validation });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await res.json()).toEqual({ plainToken: 'qgg8vlvZRS6UYooatFL8Aw', encryptedToken: createHmac('sha256', zoomSecret).update('qgg8vlvZRS6UYooatFL8Aw').digest('hex') });
    expect((await fetch(`${h.url}/hook/zoom`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: validation })).status).toBe(401);
    const old = await fetch(`${h.url}/hook/zoom`, { method: 'POST', headers: sign(validation, Math.floor(Date.now() / 1000) - 3600), body: validation });
    expect(old.status).toBe(403);
    expect(await storedCount('zoom')).toBe(0);
    const event = JSON.stringify({ event: 'meeting.started', payload: { object: { id: '1' } } });
    expect((await fetch(`${h.url}/hook/zoom`, { method: 'POST', headers: sign(event), body: event })).status).toBe(200);
    expect(await storedCount('zoom')).toBe(1);
    expect((await h.api('PUT', '/api/flows/bad-zoom', { trigger: { type: 'webhook', handshake: { type: 'zoom' } } })).status).toBe(400);

    // Two secrets (rotation): answered under the secret that signed the validation, never the
    // other one — else a holder of the old secret could have hookd sign events under the new one.
    const added = await h.api('POST', '/api/flows/zoom/secrets', { secret: 'zoom-new-secret-token-98765' });
    expect(added.status).toBe(201);
    const signWith = (secret: string, body: string) => {
      const ts = Math.floor(Date.now() / 1000);
      return { 'content-type': 'application/json', 'x-zm-request-timestamp': String(ts), 'x-zm-signature': `v0=${createHmac('sha256', secret).update(`v0:${ts}:${body}`).digest('hex')}` };
    };
    const forged = JSON.stringify({ event: 'endpoint.url_validation', payload: { plainToken: 'v0:1:{"event":"forged"}' } });
    for (const secret of [zoomSecret, 'zoom-new-secret-token-98765']) {
      const answer = await (await fetch(`${h.url}/hook/zoom`, { method: 'POST', headers: signWith(secret, forged), body: forged })).json();
      expect(answer, secret).toEqual({ plainToken: 'v0:1:{"event":"forged"}', encryptedToken: createHmac('sha256', secret).update('v0:1:{"event":"forged"}').digest('hex') });
    }
  });

  it('meta: the verification GET with the right token gets hub.challenge, a wrong token a 403; event POSTs still need their signature', async () => {
    const q = (token: string) => `hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=${token}`;
    expect(await text(await fetch(`${h.url}/hook/meta?${q('my-verify-token')}`))).toMatchObject({ status: 200, body: '1158201444' });
    expect((await fetch(`${h.url}/hook/meta?${q('guess')}`)).status).toBe(403);
    expect((await fetch(`${h.url}/hook/meta?hub.mode=subscribe&hub.challenge=1`)).status).toBe(403);
    // Not a handshake: an ordinary call, which needs the signature.
    expect((await fetch(`${h.url}/hook/meta?x=1`)).status).toBe(401);
    const body = JSON.stringify({ object: 'whatsapp_business_account', entry: [] });
    const sig = `sha256=${createHmac('sha256', githubSecret).update(body).digest('hex')}`;
    expect((await fetch(`${h.url}/hook/meta`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': sig }, body })).status).toBe(200);
    expect((await fetch(`${h.url}/hook/meta`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })).status).toBe(401);
    expect(await storedCount('meta')).toBe(1);
    // The verify token is the admin's to see.
    expect((await h.api('GET', '/api/flows/meta')).body.trigger.handshake).toEqual({ type: 'meta', verifyToken: 'my-verify-token' });
    expect((await adminCall(h.url, 'handshake-reader-0123456789', 'GET', '/api/flows/meta')).body.trigger.handshake).toEqual({ type: 'meta', verifyToken: '[redacted]' });
  });

  it('microsoft-graph: POST ?validationToken= gets the decoded token as text/plain; notifications are stored', async () => {
    const token = 'Validation: Testing client application reachability for subscription Request-Id: 7a1e…';
    const res = await text(await fetch(`${h.url}/hook/graph?validationToken=${encodeURIComponent(token)}`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '' }));
    expect(res).toMatchObject({ status: 200, type: 'text/plain; charset=utf-8', body: token });
    expect(await storedCount('graph')).toBe(0);
    const note = JSON.stringify({ value: [{ subscriptionId: 's', clientState: 'c', changeType: 'created' }] });
    expect((await fetch(`${h.url}/hook/graph`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: note })).status).toBe(200);
    expect(await storedCount('graph')).toBe(1);
  });

  it('dropbox: GET ?challenge= is echoed with nosniff before the signature the POSTs need', async () => {
    expect(await text(await fetch(`${h.url}/hook/dropbox?challenge=abc123XYZ`))).toMatchObject({ status: 200, nosniff: 'nosniff', body: 'abc123XYZ' });
    const body = JSON.stringify({ list_folder: { accounts: ['dbid:1'] } });
    const sig = createHmac('sha256', dropboxSecret).update(body).digest('hex');
    expect((await fetch(`${h.url}/hook/dropbox`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-dropbox-signature': sig }, body })).status).toBe(200);
    expect((await fetch(`${h.url}/hook/dropbox`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })).status).toBe(401);
    expect(await storedCount('dropbox')).toBe(1);
  });

  it('okta: the verification GET (with the hook\'s Authorization) gets {"verification": …}; without credentials it is refused; nothing stored', async () => {
    const challenge = 'Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg';
    const verify = (headers: Record<string, string>, flow = 'okta') =>
      fetch(`${h.url}/hook/${flow}`, { headers: { accept: 'application/json', 'user-agent': 'Okta-Integrations', 'x-okta-verification-challenge': challenge, ...headers } });
    const ok = await verify({ authorization: oktaSecret });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(ok.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await ok.json()).toEqual({ verification: challenge });
    expect((await verify({})).status).toBe(401);
    expect((await verify({ authorization: 'wrong' })).status).toBe(403);
    // Repeated (Node would join the two with ", ") or over 2,048 characters: refused, not stored as an event.
    const twice = await new Promise<string>((resolve, reject) => {
      const { port } = new URL(h.url);
      const socket = connect(Number(port), '127.0.0.1', () =>
        socket.end(`GET /hook/okta HTTP/1.1\r\nHost: x\r\nAuthorization: ${oktaSecret}\r\nX-Okta-Verification-Challenge: a\r\nX-Okta-Verification-Challenge: b\r\nConnection: close\r\n\r\n`),
      );
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString()));
      socket.on('end', () => resolve(answer));
      socket.on('error', reject);
    });
    expect(twice).toMatch(/^HTTP\/1\.1 400 /);
    expect((await verify({ authorization: oktaSecret, 'x-okta-verification-challenge': 'c'.repeat(2049) })).status).toBe(400);
    expect(await storedCount('okta')).toBe(0);
    // Events are POSTs with the same header; a GET without the challenge is an ordinary call.
    const event = JSON.stringify({ eventType: 'com.okta.event_hook', data: { events: [{ uuid: 'u1', eventType: 'user.session.start' }] } });
    expect((await fetch(`${h.url}/hook/okta`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: oktaSecret }, body: event })).status).toBe(200);
    expect((await fetch(`${h.url}/hook/okta`, { headers: { authorization: oktaSecret } })).status).toBe(200);
    // An empty challenge header is no handshake either.
    expect((await fetch(`${h.url}/hook/okta`, { headers: { authorization: oktaSecret, 'x-okta-verification-challenge': '' } })).status).toBe(200);
    expect(await storedCount('okta')).toBe(3);
    // A flow without credentials answers the challenge too.
    expect(await (await verify({}, 'okta-open')).json()).toEqual({ verification: challenge });
    expect(await storedCount('okta-open')).toBe(0);
  });

  it("handshakes spend the flow's rate limit; wrong Meta tokens are throttled per client without locking the sender out", async () => {
    const statuses = async (url: string, n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await fetch(url)).status);
      return out;
    };
    expect(await statuses(`${h.url}/hook/dropbox-limited?challenge=c`, 3)).toEqual([200, 200, 429]);
    // Clients told apart by X-Forwarded-For (the proxy is trusted): the guesser and Meta.
    const proxied = await startHookd({ WORKER_CONCURRENCY: '0', TRUST_PROXY: 'loopback' });
    try {
      await proxied.api('PUT', '/api/flows/meta-limited', { trigger: { type: 'webhook', handshake: { type: 'meta', verifyToken: 'right-token' }, rateLimit: { perSecond: 0.01, burst: 2 } }, steps: [] });
      const q = (token: string, client: string) =>
        fetch(`${proxied.url}/hook/meta-limited?hub.mode=subscribe&hub.challenge=7&hub.verify_token=${token}`, { headers: { 'x-forwarded-for': client } });
      const guesses: number[] = [];
      for (let i = 0; i < 4; i++) guesses.push((await q('guess', '203.0.113.9')).status);
      expect(guesses).toEqual([403, 403, 429, 429]);
      // The guesses spent their own bucket, not the flow's: Meta's right token still gets its challenge.
      expect(await text(await q('right-token', '198.51.100.7'))).toMatchObject({ status: 200, body: '7' });
      // On the documented setup (github auth), refused signatures do not lock a client out.
      await proxied.api('PUT', '/api/flows/meta-signed', { trigger: { type: 'webhook', auth: { type: 'github', secrets: [githubSecret] }, handshake: { type: 'meta', verifyToken: 'right-token' }, rateLimit: { perSecond: 0.01, burst: 3 } }, steps: [] });
      const body = '{"object":"page"}';
      const post = (sig: string) => fetch(`${proxied.url}/hook/meta-signed`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': sig, 'x-forwarded-for': '192.0.2.5' }, body });
      const refused: number[] = [];
      for (let i = 0; i < 4; i++) refused.push((await post('sha256=00')).status);
      expect(refused).toEqual([401, 401, 401, 401]);
      expect((await post(`sha256=${createHmac('sha256', githubSecret).update(body).digest('hex')}`)).status).toBe(200);
    } finally {
      await proxied.close();
    }
  });

  it('without a handshake the same calls are ordinary messages; a stopped flow answers no handshake', async () => {
    const res = await fetch(`${h.url}/hook/plain?challenge=abc&hub.mode=subscribe&hub.challenge=1&hub.verify_token=x`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { message: string }).message).toBe('thank you');
    expect(await storedCount('plain')).toBe(1);
    expect((await h.api('POST', '/api/flows/dropbox/stop')).status).toBe(200);
    expect((await fetch(`${h.url}/hook/dropbox?challenge=abc`)).status).toBe(404);
    expect((await h.api('PUT', '/api/flows/bad', { trigger: { type: 'webhook', handshake: { type: 'meta' } } })).status).toBe(400);
    // A value hookd will not echo (too long, repeated) is a refused handshake, never an event.
    await h.api('PUT', '/api/flows/meta-open', { trigger: { type: 'webhook', handshake: { type: 'meta', verifyToken: 'v' } }, steps: [] });
    for (const url of [
      `${h.url}/hook/meta-open?hub.mode=subscribe&hub.challenge=${'a'.repeat(2049)}&hub.verify_token=v`,
      `${h.url}/hook/meta-open?hub.mode=subscribe&hub.challenge=1&hub.challenge=2&hub.verify_token=v`,
    ]) {
      expect((await fetch(url)).status).toBe(400);
    }
    // An ordinary call carrying the verify token does not store it.
    const call = await fetch(`${h.url}/hook/meta-open?hub.verify_token=v&x=1`);
    expect(call.status).toBe(200);
    const [storedCall] = (await h.api('GET', '/api/requests?flowId=meta-open')).body.items;
    expect(storedCall.query).toEqual({ 'hub.verify_token': '[redacted]', x: '1' });
    const unsigned = await h.api('PUT', '/api/flows/bad', { trigger: { type: 'webhook', handshake: { type: 'slack' } } });
    expect(unsigned).toMatchObject({ status: 400, body: { message: expect.stringMatching(/\/trigger\/handshake: slack needs auth/) } });
  });
});
