import type { SlackAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import { type AuthFailure, type AuthHeaders, malformed, missing, singleHeader } from '../result.js';
import type { BodyVerifier } from './scheme.js';
import { type SignedParts, decodeHex, macVerifier, parseUnixSeconds, utf8Keys } from './mac.js';

export const SLACK_SIGNATURE_HEADER = 'x-slack-signature';
export const SLACK_TIMESTAMP_HEADER = 'x-slack-request-timestamp';
export const SLACK_DEFAULT_TOLERANCE_SECONDS = 300;

/** Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of v0:${ts}:${body}>` with X-Slack-Request-Timestamp. */
export function slackVerifier(auth: SlackAuthDef, headers: AuthHeaders): BodyVerifier {
  return macVerifier(
    {
      algorithm: 'sha256',
      keys: utf8Keys(secretValues(auth)),
      toleranceSeconds: auth.toleranceSeconds ?? SLACK_DEFAULT_TOLERANCE_SECONDS,
    },
    parseSlackSignature(headers),
  );
}

export function parseSlackSignature(headers: AuthHeaders): SignedParts | AuthFailure {
  return parseV0Signature(headers, SLACK_SIGNATURE_HEADER, SLACK_TIMESTAMP_HEADER, 'Slack');
}

/** `v0=<hex HMAC-SHA256 of v0:${ts}:${body}>` and a unix timestamp header: Slack's scheme, Zoom's under other names. */
export function parseV0Signature(headers: AuthHeaders, signatureHeader: string, timestampHeader: string, sender: string): SignedParts | AuthFailure {
  const sig = singleHeader(headers, signatureHeader);
  if (sig === undefined) return missing(`Signature header ${signatureHeader} is required`);
  const ts = singleHeader(headers, timestampHeader);
  if (sig === null || ts === null) return malformed(`${sender} signature headers are repeated`);
  if (ts === undefined) return malformed(`Header ${timestampHeader} is required`);
  const timestamp = parseUnixSeconds(ts.trim());
  if (timestamp === undefined) return malformed(`Header ${timestampHeader} is not a unix timestamp`);
  const m = /^v0=([0-9a-fA-F]{64})$/.exec(sig.trim());
  const digest = m ? decodeHex(m[1] ?? '') : undefined;
  if (!digest) return malformed(`Signature header ${signatureHeader} must be v0=<hex SHA-256>`);
  return { prefix: `v0:${ts.trim()}:`, signatures: [digest], timestamp };
}
