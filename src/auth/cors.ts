import type { CorsDef, WebhookAuth } from './schema.js';
import { apiKeyLocations } from './schemes/api-key.js';
import { TOKEN_HEADER } from './schemes/token.js';
import { GITHUB_SIGNATURE_HEADER } from './schemes/github.js';
import { TWILIO_SETTINGS_HEADER, TWILIO_SIGNATURE_HEADER } from './schemes/twilio.js';
import { HUBSPOT_SIGNATURE_HEADER, HUBSPOT_TIMESTAMP_HEADER } from './schemes/hubspot.js';
import { PADDLE_SIGNATURE_HEADER } from './schemes/paddle.js';
import { STRIPE_SIGNATURE_HEADER } from './schemes/stripe.js';
import { STANDARD_WEBHOOKS_HEADERS } from './schemes/standard-webhooks.js';
import { ASANA_SIGNATURE_HEADER } from './schemes/asana.js';
import { SHOPIFY_SIGNATURE_HEADER } from './schemes/shopify.js';
import { SLACK_SIGNATURE_HEADER, SLACK_TIMESTAMP_HEADER } from './schemes/slack.js';
import { ZOOM_SIGNATURE_HEADER, ZOOM_TIMESTAMP_HEADER } from './schemes/zoom.js';

/** The methods the webhook route answers. */
export const CORS_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH'] as const;
/** Request headers always allowed besides the auth scheme's. */
export const CORS_BASE_HEADERS = ['content-type', 'x-request-id'] as const;
/** Response headers a browser script may read. */
export const CORS_EXPOSED_HEADERS = ['x-request-id', 'retry-after'] as const;
export const CORS_DEFAULT_MAX_AGE_SECONDS = 600;

/** The request headers an auth scheme reads (credentials and signatures). */
export function schemeHeaders(auth: WebhookAuth | undefined): string[] {
  switch (auth?.type) {
    case 'basic':
      return ['authorization'];
    case 'apiKey': {
      const h = apiKeyLocations(auth).header;
      return h ? [h] : [];
    }
    case 'token':
      return [TOKEN_HEADER, 'authorization'];
    case 'hmac':
      return [auth.header.toLowerCase()];
    case 'github':
      return [GITHUB_SIGNATURE_HEADER];
    case 'stripe':
      return [STRIPE_SIGNATURE_HEADER];
    case 'standard-webhooks':
      return [...STANDARD_WEBHOOKS_HEADERS];
    case 'shopify':
      return [SHOPIFY_SIGNATURE_HEADER];
    case 'slack':
      return [SLACK_SIGNATURE_HEADER, SLACK_TIMESTAMP_HEADER];
    case 'zoom':
      return [ZOOM_SIGNATURE_HEADER, ZOOM_TIMESTAMP_HEADER];
    case 'paddle':
      return [PADDLE_SIGNATURE_HEADER];
    case 'twilio':
      return [TWILIO_SIGNATURE_HEADER, TWILIO_SETTINGS_HEADER];
    case 'hubspot':
      return [HUBSPOT_SIGNATURE_HEADER, HUBSPOT_TIMESTAMP_HEADER];
    case 'asana':
      return [ASANA_SIGNATURE_HEADER];
    default:
      return [];
  }
}

/** Browsers send `scheme://host[:port]`, lower-case, without a default port; configs are normalised alike. */
function normalizeOrigin(origin: string): string | undefined {
  if (origin === '*') return origin;
  try {
    const o = new URL(origin).origin;
    return o === 'null' ? undefined : o;
  } catch {
    return undefined;
  }
}

/**
 * The Access-Control-Allow-Origin value for a request's Origin: `*` when the list has `*`, the
 * origin itself when listed, undefined when not allowed (or no CORS config / no Origin).
 */
export function allowedOrigin(cors: CorsDef | undefined, origin: string | undefined): string | undefined {
  if (!cors || origin === undefined || origin === '') return undefined;
  const wanted = normalizeOrigin(origin);
  let wildcard = false;
  for (const o of cors.origins) {
    const n = normalizeOrigin(o);
    if (n === '*') wildcard = true;
    else if (wanted !== undefined && n === wanted) return origin;
  }
  return wildcard ? '*' : undefined;
}

/** Whether the answer depends on Origin (so caches must key on it). */
function varies(cors: CorsDef): boolean {
  return !cors.origins.includes('*');
}

/**
 * Headers for an actual (non-preflight) response. Empty when the origin is not allowed: the browser
 * then withholds the response from the calling script. `Vary: Origin` is set whenever the answer
 * depends on the origin, allowed or not, so a shared cache never serves one origin's answer to another.
 */
export function corsResponseHeaders(cors: CorsDef | undefined, origin: string | undefined): Record<string, string> {
  if (!cors) return {};
  const out: Record<string, string> = {};
  if (varies(cors)) out['vary'] = 'Origin';
  const allow = allowedOrigin(cors, origin);
  if (allow === undefined) return out;
  out['access-control-allow-origin'] = allow;
  out['access-control-expose-headers'] = CORS_EXPOSED_HEADERS.join(', ');
  return out;
}

export interface PreflightRequest {
  origin: string | undefined;
  /** Access-Control-Request-Method. */
  requestMethod: string | undefined;
}

export type PreflightResult = { ok: true; status: 204; headers: Record<string, string> } | { ok: false };

/**
 * The answer to `OPTIONS` with Origin + Access-Control-Request-Method. Allowed request headers are
 * the base ones, the auth scheme's (signature headers included) and the config's extras; browsers
 * never send credentials on a preflight, so it is not authenticated. `{ ok: false }` (origin or
 * method not allowed, or no CORS config) should be answered as for an unknown flow, so a preflight
 * does not reveal more than a plain request would.
 */
export function corsPreflight(
  cors: CorsDef | undefined,
  auth: WebhookAuth | undefined,
  req: PreflightRequest,
): PreflightResult {
  if (!cors) return { ok: false };
  const allow = allowedOrigin(cors, req.origin);
  const method = req.requestMethod?.trim().toUpperCase();
  if (allow === undefined || !method || !(CORS_METHODS as readonly string[]).includes(method)) return { ok: false };
  const headers = new Set<string>([
    ...CORS_BASE_HEADERS,
    ...schemeHeaders(auth),
    ...(cors.headers ?? []).map((h) => h.toLowerCase()),
  ]);
  const out: Record<string, string> = {
    'access-control-allow-origin': allow,
    'access-control-allow-methods': CORS_METHODS.join(', '),
    'access-control-allow-headers': [...headers].join(', '),
    'access-control-max-age': String(cors.maxAgeSeconds ?? CORS_DEFAULT_MAX_AGE_SECONDS),
  };
  if (varies(cors)) out['vary'] = 'Origin';
  return { ok: true, status: 204, headers: out };
}
