import type { AuthFailure, AuthRequest, AuthResult } from '../result.js';

/** What a verifier needs at the end: everything but the bytes, which were streamed through update(). */
export type FinishRequest = Omit<AuthRequest, 'rawBody'>;

/**
 * One request's credential check. Created from the headers before the body is read; the body bytes
 * are fed through update() as they arrive; finish() gives the verdict.
 */
export interface BodyVerifier {
  /**
   * Set when the headers alone already fail (credentials missing or malformed): the ingress may
   * answer with it before reading the body. finish() returns the same failure.
   */
  readonly early: AuthFailure | undefined;
  /** False when the scheme never looks at the body bytes (update() is then a no-op). */
  readonly needsBody: boolean;
  /**
   * True when the verdict may depend on the parsed body (a token in a JSON or form field). False:
   * finish() can decide from headers and query (and, with needsBody, the bytes) without a parse —
   * the ingress then refuses before reading (or before parsing) the body of a caller without valid
   * credentials, who could otherwise make it read and parse up to PAYLOAD_SIZE_LIMIT.
   */
  readonly needsParsedBody: boolean;
  update(chunk: Buffer): void;
  /** Idempotent: a second call returns the first verdict. */
  finish(req: FinishRequest): AuthResult;
}

/** A verifier for schemes that decide from headers, query and parsed body (no streaming). */
export function plainVerifier(
  check: (req: FinishRequest) => AuthResult,
  early?: AuthFailure,
  needsParsedBody = false,
): BodyVerifier {
  let verdict: AuthResult | undefined;
  return {
    early,
    needsBody: false,
    needsParsedBody,
    update() {},
    finish(req) {
      verdict ??= early ?? check(req);
      return verdict;
    },
  };
}

/** A verifier whose verdict the headers already decided. */
export function rejectedVerifier(failure: AuthFailure): BodyVerifier {
  return { early: failure, needsBody: false, needsParsedBody: false, update() {}, finish: () => failure };
}
