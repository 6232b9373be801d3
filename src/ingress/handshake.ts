import { createHmac } from 'node:crypto';
import { secretValues, type WebhookAuth } from '../auth/schema.js';
import { safeEqual } from '../auth/timing-safe.js';
import type { HandshakeDef } from '../core/flow.js';

/** What hookd answers a handshake with: the provider's value echoed (as text, or Zoom's and Okta's JSON). */
export interface HandshakeAnswer {
  status: 200;
  headers: Record<string, string>;
  body: string;
}

/** A challenge longer than this is no provider's: the handshake is refused (400), never stored. */
const MAX_CHALLENGE = 2048;

const text = (body: string, extra: Record<string, string> = {}): HandshakeAnswer => ({
  status: 200,
  // nosniff: the echoed value is the sender's; a browser must never take it for HTML.
  headers: { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff', 'cache-control': 'no-store', ...extra },
  body,
});

const json = (value: object): HandshakeAnswer => ({
  status: 200,
  headers: { 'content-type': 'application/json; charset=utf-8', 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' },
  body: JSON.stringify(value),
});

function one(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v;
  return s !== undefined && s.length > 0 && s.length <= MAX_CHALLENGE ? s : undefined;
}

/** Present, but no value hookd echoes (repeated, or longer than MAX_CHALLENGE): a handshake refused. */
function unusable(v: string | string[] | undefined): boolean {
  return v !== undefined && v !== '' && one(v) === undefined;
}

/**
 * Handshakes that carry no signature (they come before the provider signs anything, or never
 * do), recognised from method and query before credentials are checked: Meta's verification GET
 * (its `hub.verify_token` is the check: a wrong one is `'refused'`), Microsoft Graph's
 * `validationToken`, Dropbox's `challenge`. `'invalid'`: a handshake whose value hookd will not
 * echo (repeated, or over 2,048 characters) — refused, never stored as an event. Undefined: not a
 * handshake, an ordinary call.
 */
export function handshakeBeforeCredentials(
  handshake: HandshakeDef | undefined,
  method: string,
  query: Record<string, string | string[] | undefined>,
): HandshakeAnswer | 'refused' | 'invalid' | undefined {
  switch (handshake?.type) {
    case 'meta': {
      if (method === 'GET' && query['hub.mode'] === 'subscribe' && unusable(query['hub.challenge'])) return 'invalid';
      const challenge = one(query['hub.challenge']);
      if (method !== 'GET' || query['hub.mode'] !== 'subscribe' || challenge === undefined) return undefined;
      const token = one(query['hub.verify_token']);
      return token !== undefined && safeEqual(token, handshake.verifyToken) ? text(challenge) : 'refused';
    }
    case 'microsoft-graph': {
      if (method === 'POST' && unusable(query.validationToken)) return 'invalid';
      const token = one(query.validationToken);
      return method === 'POST' && token !== undefined ? text(token) : undefined;
    }
    case 'dropbox': {
      if (method === 'GET' && unusable(query.challenge)) return 'invalid';
      const challenge = one(query.challenge);
      return method === 'GET' && challenge !== undefined ? text(challenge) : undefined;
    }
    default:
      return undefined;
  }
}

/**
 * Handshakes recognised from method and headers once the call's credentials verified: Okta's
 * one-time verification GET carries the hook's Authorization header like every event after it,
 * and its `X-Okta-Verification-Challenge` is answered as `{"verification": …}`.
 */
export function handshakeInHeaders(
  handshake: HandshakeDef | undefined,
  method: string,
  /** The request: its headersDistinct (built when read) gives each header's values as sent; Node joins a repeated one with ", ". */
  request: { readonly headersDistinct: Record<string, string[] | undefined> },
): HandshakeAnswer | 'invalid' | undefined {
  if (handshake?.type !== 'okta' || method !== 'GET') return undefined;
  const values = request.headersDistinct['x-okta-verification-challenge'];
  if (values === undefined || (values.length === 1 && values[0] === '')) return undefined;
  const challenge = one(values);
  return challenge === undefined ? 'invalid' : json({ verification: challenge });
}

/**
 * Handshakes signed like the events that follow, once the body verified and parsed: Slack's
 * url_verification; Zoom's endpoint.url_validation, answered with the token and its HMAC-SHA256
 * (hex) under the secret that verified this very request. Never under another one: while two
 * secrets are held, a caller with the old one would otherwise have hookd sign what it likes
 * under the new one — events that still verify once the old secret is deleted.
 */
export function handshakeInBody(
  handshake: HandshakeDef | undefined,
  body: unknown,
  auth: WebhookAuth | undefined,
  /** The verdict's `key`: the index of the secret that signed this request. */
  signedWith: number | undefined,
): HandshakeAnswer | 'invalid' | undefined {
  if (handshake === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) return undefined;
  if (handshake.type === 'slack') {
    const { type, challenge } = body as { type?: unknown; challenge?: unknown };
    if (type !== 'url_verification') return undefined;
    return typeof challenge === 'string' && one(challenge) !== undefined ? text(challenge) : 'invalid';
  }
  if (handshake.type === 'zoom') {
    const { event, payload } = body as { event?: unknown; payload?: { plainToken?: unknown } | null };
    const plainToken = typeof payload === 'object' && payload !== null ? payload.plainToken : undefined;
    if (event !== 'endpoint.url_validation') return undefined;
    if (typeof plainToken !== 'string' || one(plainToken) === undefined) return 'invalid';
    // No signing secret known: refused, never stored.
    const secret = auth?.type === 'zoom' && signedWith !== undefined ? secretValues(auth)[signedWith] : undefined;
    if (secret === undefined) return 'invalid';
    const encryptedToken = createHmac('sha256', secret).update(plainToken).digest('hex');
    return json({ plainToken, encryptedToken });
  }
  return undefined;
}
