import type { GithubAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import type { AuthHeaders } from '../result.js';
import type { BodyVerifier } from './scheme.js';
import { macVerifier, utf8Keys } from './mac.js';
import { parseSignatureHeader } from './hmac.js';

export const GITHUB_SIGNATURE_HEADER = 'x-hub-signature-256';

/** GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` (the SHA-1 header is not accepted). */
export function githubVerifier(auth: GithubAuthDef, headers: AuthHeaders): BodyVerifier {
  return macVerifier(
    { algorithm: 'sha256', keys: utf8Keys(secretValues(auth)) },
    parseSignatureHeader(headers, {
      header: GITHUB_SIGNATURE_HEADER,
      prefix: 'sha256=',
      encoding: 'hex',
      algorithm: 'sha256',
    }),
  );
}
