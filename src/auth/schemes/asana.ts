import type { AsanaAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import { type AuthHeaders, mismatch } from '../result.js';
import { type BodyVerifier, rejectedVerifier } from './scheme.js';
import { macVerifier, utf8Keys } from './mac.js';
import { parseSignatureHeader } from './hmac.js';

export const ASANA_SIGNATURE_HEADER = 'x-hook-signature';

/**
 * Asana: `X-Hook-Signature: <hex HMAC-SHA256 of the body>` under the secret of the webhook's
 * handshake. A flow that has not learned it yet refuses every event (403, like a wrong signature:
 * nothing tells a caller whether the flow holds a secret).
 */
export function asanaVerifier(auth: AsanaAuthDef, headers: AuthHeaders): BodyVerifier {
  const keys = secretValues(auth);
  if (keys.length === 0) return rejectedVerifier(mismatch());
  return macVerifier(
    { algorithm: 'sha256', keys: utf8Keys(keys) },
    parseSignatureHeader(headers, { header: ASANA_SIGNATURE_HEADER, encoding: 'hex', algorithm: 'sha256' }),
  );
}
