import type { StripeAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import type { AuthFailure, AuthHeaders } from '../result.js';
import type { BodyVerifier } from './scheme.js';
import { type SignedParts, macVerifier, parseKeyedSignatures, utf8Keys } from './mac.js';

export const STRIPE_SIGNATURE_HEADER = 'stripe-signature';
export const STRIPE_DEFAULT_TOLERANCE_SECONDS = 300;

/**
 * Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`, each v1 an HMAC-SHA256 of
 * `${t}.${body}` keyed with the whole `whsec_…` string. Any v1 may match (Stripe sends one per
 * active secret while the endpoint's secret is being rolled); other schemes are ignored.
 */
export function stripeVerifier(auth: StripeAuthDef, headers: AuthHeaders): BodyVerifier {
  return macVerifier(
    {
      algorithm: 'sha256',
      keys: utf8Keys(secretValues(auth)),
      toleranceSeconds: auth.toleranceSeconds ?? STRIPE_DEFAULT_TOLERANCE_SECONDS,
    },
    parseStripeSignature(headers),
  );
}

export function parseStripeSignature(headers: AuthHeaders): SignedParts | AuthFailure {
  return parseKeyedSignatures(headers, { header: STRIPE_SIGNATURE_HEADER, separator: ',', timestampKey: 't', signatureKey: 'v1', glue: '.' });
}
