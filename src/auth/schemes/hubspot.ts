import type { HubspotAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import { type AuthFailure, type AuthHeaders, malformed, mismatch, missing, singleHeader } from '../result.js';
import { type SignedParts, decodeBase64, DIGEST_BYTES, macVerifier, utf8Keys } from './mac.js';
import { type BodyVerifier, rejectedVerifier } from './scheme.js';

export const HUBSPOT_SIGNATURE_HEADER = 'x-hubspot-signature-v3';
export const HUBSPOT_TIMESTAMP_HEADER = 'x-hubspot-request-timestamp';
/** HubSpot rejects requests older than 5 minutes; both directions here, as every timestamped preset. */
export const HUBSPOT_DEFAULT_TOLERANCE_SECONDS = 300;

/**
 * HubSpot's signature v3 (developers.hubspot.com, request validation): `X-HubSpot-Signature-v3`
 * is the base64 HMAC-SHA256, keyed with the app's client secret, of method + URL + body +
 * `X-HubSpot-Request-Timestamp` (epoch ms, as sent). The URL is the one HubSpot called (built by
 * the ingress as for Twilio), with the percent-encodings HubSpot's table lists decoded. The older
 * v1/v2 signatures (no timestamp: replayable forever) are not accepted.
 */
export function hubspotVerifier(auth: HubspotAuthDef, headers: AuthHeaders, target: { url?: string; method: string } | undefined): BodyVerifier {
  const parsed = parseHubspotSignature(headers, target);
  return macVerifier(
    { algorithm: 'sha256', keys: utf8Keys(secretValues(auth)), toleranceSeconds: auth.toleranceSeconds ?? HUBSPOT_DEFAULT_TOLERANCE_SECONDS },
    parsed,
  );
}

function parseHubspotSignature(headers: AuthHeaders, target: { url?: string; method: string } | undefined): SignedParts | AuthFailure {
  const sig = singleHeader(headers, HUBSPOT_SIGNATURE_HEADER);
  if (sig === undefined) return missing(`Signature header ${HUBSPOT_SIGNATURE_HEADER} is required`);
  const ts = singleHeader(headers, HUBSPOT_TIMESTAMP_HEADER);
  if (sig === null || ts === null) return malformed('HubSpot signature headers are repeated');
  if (ts === undefined) return malformed(`Header ${HUBSPOT_TIMESTAMP_HEADER} is required`);
  const stamp = ts.trim();
  if (!/^\d{1,15}$/.test(stamp)) return malformed(`Header ${HUBSPOT_TIMESTAMP_HEADER} is not a time in epoch milliseconds`);
  const digest = decodeBase64(sig.trim());
  if (digest?.length !== DIGEST_BYTES.sha256) return malformed(`Signature header ${HUBSPOT_SIGNATURE_HEADER} must be a base64 HMAC-SHA256`);
  // Without the URL nothing can verify (a HEAD probe of a caller that gave none): as a wrong signature.
  if (target?.url === undefined) return mismatch('Signature does not match');
  return { prefix: target.method + hubspotUri(target.url), signatures: [digest], timestamp: Number(stamp) / 1000, suffix: stamp };
}

const DECODED: Record<string, string> = { '3A': ':', '2F': '/', '3F': '?', '40': '@', '21': '!', '24': '$', '27': "'", '28': '(', '29': ')', '2A': '*', '2C': ',', '3B': ';' };

/** The URI as HubSpot signs it: these percent-encodings decoded, every other byte as called. */
export function hubspotUri(url: string): string {
  return url.replace(/%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)/gi, (_, hex: string) => DECODED[hex.toUpperCase()]!);
}
