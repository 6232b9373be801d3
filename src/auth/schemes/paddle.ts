import type { PaddleAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import type { AuthFailure, AuthHeaders } from '../result.js';
import type { BodyVerifier } from './scheme.js';
import { type SignedParts, macVerifier, parseKeyedSignatures, utf8Keys } from './mac.js';

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
  return parseKeyedSignatures(headers, { header: PADDLE_SIGNATURE_HEADER, separator: ';', timestampKey: 'ts', signatureKey: 'h1', glue: ':' });
}
