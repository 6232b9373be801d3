import type { PaddleAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import { type AuthFailure, type AuthHeaders, malformed, missing, singleHeader } from '../result.js';
import type { BodyVerifier } from './scheme.js';
import { MAX_SIGNATURES, type SignedParts, decodeHex, macVerifier, parseUnixSeconds, utf8Keys } from './mac.js';

export const PADDLE_SIGNATURE_HEADER = 'paddle-signature';
/**
 * As the other timestamped presets (Paddle's SDKs allow 5 s, and only into the past): a receiver
 * whose clock lags Paddle's, or a proxy that buffers bodies, must not refuse real deliveries. A
 * signed request replayed within it is stored once (its notification_id, ingress/request-id.ts).
 */
export const PADDLE_DEFAULT_TOLERANCE_SECONDS = 300;

/**
 * Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>…]`, each h1 an HMAC-SHA256 of
 * `${ts}:${body}` keyed with the notification destination's secret key. Any h1 may match (one per
 * secret while Paddle rotates it); other schemes are ignored.
 */
export function paddleVerifier(auth: PaddleAuthDef, headers: AuthHeaders): BodyVerifier {
  return macVerifier(
    {
      algorithm: 'sha256',
      keys: utf8Keys(secretValues(auth)),
      toleranceSeconds: auth.toleranceSeconds ?? PADDLE_DEFAULT_TOLERANCE_SECONDS,
    },
    parsePaddleSignature(headers),
  );
}

export function parsePaddleSignature(headers: AuthHeaders): SignedParts | AuthFailure {
  const value = singleHeader(headers, PADDLE_SIGNATURE_HEADER);
  if (value === undefined) return missing('Signature header paddle-signature is required');
  if (value === null) return malformed('Signature header paddle-signature is repeated');
  let ts: string | undefined;
  let unreadable = false;
  const signatures: Buffer[] = [];
  for (const item of value.split(';')) {
    const eq = item.indexOf('=');
    if (eq < 0) continue;
    const key = item.slice(0, eq).trim();
    const val = item.slice(eq + 1).trim();
    if (key === 'ts') {
      if (ts !== undefined) return malformed('paddle-signature has more than one timestamp');
      ts = val;
    } else if (key === 'h1') {
      // One entry that is no digest does not void a valid one beside it.
      const sig = decodeHex(val);
      if (sig?.length === 32) signatures.push(sig);
      else unreadable = true;
    }
  }
  const timestamp = ts === undefined ? undefined : parseUnixSeconds(ts);
  if (timestamp === undefined) return malformed('paddle-signature lacks a valid timestamp ts=');
  if (signatures.length === 0) return malformed(unreadable ? 'paddle-signature has no h1 that is a hex SHA-256 digest' : 'paddle-signature lacks an h1 signature');
  if (signatures.length > MAX_SIGNATURES) return malformed('paddle-signature has too many signatures');
  return { prefix: `${ts}:`, signatures, timestamp };
}
