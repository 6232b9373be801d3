import { OK } from '../result.js';
import { type BodyVerifier, plainVerifier } from './scheme.js';

/** No credentials required. */
export function noneVerifier(): BodyVerifier {
  return plainVerifier(() => OK);
}
