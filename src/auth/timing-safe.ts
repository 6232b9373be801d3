import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Constant-time equality for values of any length. Both sides are hashed first so that
 * `timingSafeEqual` always compares two 32-byte digests: neither the length of the secret nor the
 * position of the first differing byte shows in the timing.
 */
export function safeEqual(a: string | Uint8Array, b: string | Uint8Array): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}

/**
 * True when any candidate equals any expected value. Every pair is compared (no early exit), so the
 * timing does not tell which secret of a rotation pair matched, or whether the first one did.
 */
export function anyEqual(
  candidates: ReadonlyArray<string | Uint8Array>,
  expected: ReadonlyArray<string | Uint8Array>,
): boolean {
  let match = false;
  for (const c of candidates) {
    for (const e of expected) {
      // safeEqual runs first, so every pair is compared even after a match.
      match = safeEqual(c, e) || match;
    }
  }
  return match;
}
