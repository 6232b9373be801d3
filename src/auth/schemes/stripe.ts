import type { StripeAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import { type AuthFailure, type AuthHeaders, malformed, missing, singleHeader } from '../result.js';
import type { BodyVerifier } from './scheme.js';
import { MAX_SIGNATURES, type SignedParts, decodeHex, macVerifier, parseUnixSeconds, utf8Keys } from './mac.js';

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
  const value = singleHeader(headers, STRIPE_SIGNATURE_HEADER);
  if (value === undefined) return missing('Signature header stripe-signature is required');
  if (value === null) return malformed('Signature header stripe-signature is repeated');
  let t: string | undefined;
  let unreadable = false;
  const signatures: Buffer[] = [];
  for (const item of value.split(',')) {
    const eq = item.indexOf('=');
    if (eq < 0) continue;
    const key = item.slice(0, eq).trim();
    const val = item.slice(eq + 1).trim();
    if (key === 't') {
      if (t !== undefined) return malformed('stripe-signature has more than one timestamp');
      t = val;
    } else if (key === 'v1') {
      // One entry that is no digest (a sender's bug, a proxy) does not void a valid one beside it.
      const sig = decodeHex(val);
      if (sig?.length === 32) signatures.push(sig);
      else unreadable = true;
    }
  }
  const timestamp = t === undefined ? undefined : parseUnixSeconds(t);
  if (timestamp === undefined) return malformed('stripe-signature lacks a valid timestamp t=');
  if (signatures.length === 0) return malformed(unreadable ? 'stripe-signature has no v1 that is a hex SHA-256 digest' : 'stripe-signature lacks a v1 signature');
  if (signatures.length > MAX_SIGNATURES) return malformed('stripe-signature has too many signatures');
  return { prefix: `${t}.`, signatures, timestamp };
}
