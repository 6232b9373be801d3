import type { HmacAlgorithmDef, HmacAuthDef, HmacEncodingDef, WebhookAuth } from '../schema.js';
import { secretValues } from '../schema.js';
import { type AuthFailure, type AuthHeaders, malformed, missing, singleHeader } from '../result.js';
import type { BodyVerifier } from './scheme.js';
import { DIGEST_BYTES, type SignedParts, decodeBase64, decodeHex, macVerifier, utf8Keys } from './mac.js';

export interface SignatureHeaderFormat {
  header: string;
  prefix?: string;
  encoding: HmacEncodingDef;
  algorithm: HmacAlgorithmDef;
}

/** Generic HMAC over the raw body: `header: ${prefix}${hex|base64 digest}`. */
export function hmacVerifier(auth: HmacAuthDef, headers: AuthHeaders): BodyVerifier {
  const format: SignatureHeaderFormat = {
    header: auth.header.toLowerCase(),
    encoding: auth.encoding ?? 'hex',
    algorithm: auth.algorithm ?? 'sha256',
  };
  if (auth.prefix !== undefined) format.prefix = auth.prefix;
  return macVerifier(
    { algorithm: format.algorithm, keys: utf8Keys(secretValues(auth)) },
    parseSignatureHeader(headers, format),
  );
}

/** Reads one `${prefix}${digest}` signature header (GitHub, Shopify and generic HMAC). */
export function parseSignatureHeader(headers: AuthHeaders, f: SignatureHeaderFormat): SignedParts | AuthFailure {
  const value = singleHeader(headers, f.header);
  if (value === undefined) return missing(`Signature header ${f.header} is required`);
  if (value === null) return malformed(`Signature header ${f.header} is repeated`);
  const trimmed = value.trim();
  const prefix = f.prefix ?? '';
  if (trimmed.slice(0, prefix.length).toLowerCase() !== prefix.toLowerCase()) {
    return malformed(`Signature header ${f.header} must start with ${prefix}`);
  }
  const encoded = trimmed.slice(prefix.length);
  const sig = f.encoding === 'hex' ? decodeHex(encoded) : decodeBase64(encoded);
  if (!sig || sig.length !== DIGEST_BYTES[f.algorithm]) {
    return malformed(`Signature header ${f.header} is not a ${f.encoding} ${f.algorithm} digest`);
  }
  return { prefix: '', signatures: [sig] };
}

/** An `hmac` credential's own signature header (lower case): no name pattern finds it, so readers and logs are told. */
export function ownSignatureHeader(auth: WebhookAuth | undefined): string | undefined {
  return auth?.type === 'hmac' ? auth.header.toLowerCase() : undefined;
}
