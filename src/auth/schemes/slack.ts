import type { SlackAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import type { AuthFailure, AuthHeaders } from '../result.js';
import type { BodyVerifier } from './scheme.js';
import { type SignedParts, macVerifier, parseV0Signature, utf8Keys } from './mac.js';

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
