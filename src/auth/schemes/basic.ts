import type { BasicAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import { type AuthHeaders, OK, malformed, mismatch, missing, singleHeader } from '../result.js';
import { anyEqual, safeEqual } from '../timing-safe.js';
import { type BodyVerifier, plainVerifier, rejectedVerifier } from './scheme.js';

export const BASIC_CHALLENGE = { 'www-authenticate': 'Basic realm="hookd"' };

/** HTTP Basic (RFC 7617): `Authorization: Basic base64(username:password)`, UTF-8. */
export function basicVerifier(auth: BasicAuthDef, headers: AuthHeaders): BodyVerifier {
  const header = singleHeader(headers, 'authorization');
  if (header === undefined) return rejectedVerifier(missing('Basic credentials are required', BASIC_CHALLENGE));
  if (header === null) return rejectedVerifier(malformed('Authorization header is repeated', BASIC_CHALLENGE));
  const m = /^basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i.exec(header);
  if (!m) {
    // Another scheme (Bearer…) is not Basic credentials at all; a broken Basic header is malformed.
    const failure = /^basic\b/i.test(header)
      ? malformed('Basic credentials are not valid base64', BASIC_CHALLENGE)
      : missing('Basic credentials are required', BASIC_CHALLENGE);
    return rejectedVerifier(failure);
  }
  const decoded = Buffer.from(m[1] ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return rejectedVerifier(malformed('Basic credentials lack a colon', BASIC_CHALLENGE));
  const username = decoded.slice(0, colon);
  const password = decoded.slice(colon + 1);
  return plainVerifier(() => {
    // Both parts are always compared: the timing tells nothing about which one was wrong.
    const userOk = safeEqual(username, auth.username);
    const passOk = anyEqual([password], secretValues(auth));
    return userOk && passOk ? OK : mismatch();
  });
}
