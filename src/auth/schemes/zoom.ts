import type { ZoomAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import type { AuthHeaders } from '../result.js';
import type { BodyVerifier } from './scheme.js';
import { macVerifier, parseV0Signature, utf8Keys } from './mac.js';

export const ZOOM_DEFAULT_TOLERANCE_SECONDS = 300;

export const ZOOM_SIGNATURE_HEADER = 'x-zm-signature';
export const ZOOM_TIMESTAMP_HEADER = 'x-zm-request-timestamp';

/** Zoom: `X-Zm-Signature: v0=<hex HMAC-SHA256 of v0:${ts}:${body}>` with X-Zm-Request-Timestamp (Slack's scheme). */
export function zoomVerifier(auth: ZoomAuthDef, headers: AuthHeaders): BodyVerifier {
  return macVerifier(
    {
      algorithm: 'sha256',
      keys: utf8Keys(secretValues(auth)),
      toleranceSeconds: auth.toleranceSeconds ?? ZOOM_DEFAULT_TOLERANCE_SECONDS,
    },
    parseV0Signature(headers, ZOOM_SIGNATURE_HEADER, ZOOM_TIMESTAMP_HEADER, 'Zoom'),
  );
}
