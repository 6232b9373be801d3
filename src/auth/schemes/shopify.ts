import type { ShopifyAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import type { AuthHeaders } from '../result.js';
import type { BodyVerifier } from './scheme.js';
import { macVerifier, utf8Keys } from './mac.js';
import { parseSignatureHeader } from './hmac.js';

export const SHOPIFY_SIGNATURE_HEADER = 'x-shopify-hmac-sha256';

/** Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>` keyed with the app's client secret. */
export function shopifyVerifier(auth: ShopifyAuthDef, headers: AuthHeaders): BodyVerifier {
  return macVerifier(
    { algorithm: 'sha256', keys: utf8Keys(secretValues(auth)) },
    parseSignatureHeader(headers, { header: SHOPIFY_SIGNATURE_HEADER, encoding: 'base64', algorithm: 'sha256' }),
  );
}
