import type { StandardWebhooksAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import { type AuthFailure, type AuthHeaders, malformed, missing, singleHeader } from '../result.js';
import type { BodyVerifier } from './scheme.js';
import { MAX_SIGNATURES, type SignedParts, decodeBase64, macVerifier, parseUnixSeconds } from './mac.js';

export const STANDARD_WEBHOOKS_HEADERS = ['webhook-id', 'webhook-timestamp', 'webhook-signature'] as const;
/** Svix, the reference implementation, sends the same scheme under its own brand. */
export const SVIX_HEADERS = ['svix-id', 'svix-timestamp', 'svix-signature'] as const;
export const STANDARD_WEBHOOKS_DEFAULT_TOLERANCE_SECONDS = 300;
export const STANDARD_WEBHOOKS_SECRET_PREFIX = 'whsec_';

/**
 * Standard Webhooks (standardwebhooks.com): `webhook-signature` holds space-separated `v1,<base64>`
 * entries, each an HMAC-SHA256 of `${webhook-id}.${webhook-timestamp}.${body}` keyed with the
 * base64-decoded secret (after its `whsec_` prefix). Other versions (v1a…) are ignored.
 */
export function standardWebhooksVerifier(auth: StandardWebhooksAuthDef, headers: AuthHeaders): BodyVerifier {
  return macVerifier(
    {
      algorithm: 'sha256',
      keys: secretValues(auth).map(standardWebhooksKey),
      toleranceSeconds: auth.toleranceSeconds ?? STANDARD_WEBHOOKS_DEFAULT_TOLERANCE_SECONDS,
    },
    parseStandardWebhooksSignature(headers),
  );
}

/** The HMAC key of a `whsec_<base64>` secret; empty (never verifies) when it is not base64. */
export function standardWebhooksKey(secret: string): Buffer {
  const b64 = secret.startsWith(STANDARD_WEBHOOKS_SECRET_PREFIX)
    ? secret.slice(STANDARD_WEBHOOKS_SECRET_PREFIX.length)
    : secret;
  return decodeBase64(b64) ?? Buffer.alloc(0);
}

export function parseStandardWebhooksSignature(headers: AuthHeaders): SignedParts | AuthFailure {
  const svix = singleHeader(headers, 'webhook-signature') === undefined && singleHeader(headers, 'svix-signature') !== undefined;
  const names = svix ? SVIX_HEADERS : STANDARD_WEBHOOKS_HEADERS;
  const [idName, tsName, sigName] = names;
  const sigHeader = singleHeader(headers, sigName);
  if (sigHeader === undefined) return missing(`Signature header ${sigName} is required`);
  const id = singleHeader(headers, idName);
  const ts = singleHeader(headers, tsName);
  if (sigHeader === null || id === null || ts === null) return malformed('Signature headers are repeated');
  if (id === undefined) return malformed(`Header ${idName} is required with ${sigName}`);
  if (ts === undefined) return malformed(`Header ${tsName} is required with ${sigName}`);
  const timestamp = parseUnixSeconds(ts.trim());
  if (timestamp === undefined) return malformed(`Header ${tsName} is not a unix timestamp`);
  const signatures: Buffer[] = [];
  // Entries that cannot be a v1 signature are passed over: one bad entry (a sender's bug, a proxy)
  // does not void a valid one beside it. Only when none is left is the header malformed.
  let unreadable = false;
  for (const entry of sigHeader.split(' ')) {
    if (entry === '') continue;
    const comma = entry.indexOf(',');
    if (comma >= 0 && entry.slice(0, comma) !== 'v1') continue; // another version (v1a…)
    const sig = comma < 0 ? undefined : decodeBase64(entry.slice(comma + 1));
    if (sig?.length === 32) signatures.push(sig);
    else unreadable = true;
  }
  if (signatures.length === 0) {
    return malformed(unreadable ? `${sigName} has no entry like v1,<base64 SHA-256 digest>` : `${sigName} lacks a v1 signature`);
  }
  if (signatures.length > MAX_SIGNATURES) return malformed(`${sigName} has too many signatures`);
  return { prefix: `${id}.${ts.trim()}.`, signatures, timestamp };
}
