import { E } from '../core/errors.js';

/** What a credential check needs from a request. Header names are lower-cased. */
export interface AuthRequest {
  method: string;
  headers: Record<string, string | string[] | undefined>;
  query: Record<string, string | string[]>;
  /** The body bytes exactly as received: signatures are verified on these, never on re-serialised JSON. */
  rawBody: Buffer;
  /** The parsed body (JSON value, form object…), used only to read a `token` field. */
  body: unknown;
  /** Epoch milliseconds. */
  now: number;
  /**
   * The URL as the sender called it, query included, unnormalized (PUBLIC_URL + the path and query
   * received): for schemes that sign it (Twilio).
   */
  url?: string;
}

export type AuthHeaders = AuthRequest['headers'];

/**
 * Why a check failed, for logs and metrics (the client sees `code` + `message`):
 * - missing:   no credentials where the scheme expects them (401)
 * - malformed: credentials present but unparseable (401)
 * - mismatch:  well-formed credentials that do not verify (403)
 * - timestamp: a valid signature with a timestamp outside the tolerance, either direction (403)
 */
export type AuthFailureReason = 'missing' | 'malformed' | 'mismatch' | 'timestamp';

export interface AuthFailure {
  ok: false;
  status: 401 | 403;
  code: string;
  message: string;
  reason: AuthFailureReason;
  headers?: Record<string, string>;
}

/**
 * For signature schemes: `key`, the index of the secret whose signature verified (a rotation holds
 * two); `signature`, the verified signature's bytes (decoded, so every spelling of one signature is
 * the same bytes), which only its sender could have made for this request (dedupeBySignature).
 */
export type AuthResult = { ok: true; key?: number; signature?: Buffer } | AuthFailure;

export const OK: AuthResult = Object.freeze({ ok: true as const });

// Codes come from the registry. Proposed dedicated codes (AUTH_MISSING, AUTH_MALFORMED, AUTH_INVALID,
// AUTH_TIMESTAMP) would map 1:1 onto `reason`; until they exist, 401/403 use UNAUTHORIZED/FORBIDDEN.

export function missing(message: string, headers?: Record<string, string>): AuthFailure {
  return fail(401, E.UNAUTHORIZED.code, 'missing', message, headers);
}

export function malformed(message: string, headers?: Record<string, string>): AuthFailure {
  return fail(401, E.UNAUTHORIZED.code, 'malformed', message, headers);
}

/** Deliberately generic: never says which secret, which part or how close. */
export function mismatch(message = 'Credentials are not valid'): AuthFailure {
  return fail(403, E.FORBIDDEN.code, 'mismatch', message);
}

export function staleTimestamp(toleranceSeconds: number): AuthFailure {
  return fail(
    403,
    E.FORBIDDEN.code,
    'timestamp',
    `Signature timestamp is outside the tolerance of ${toleranceSeconds} seconds`,
  );
}

function fail(
  status: 401 | 403,
  code: string,
  reason: AuthFailureReason,
  message: string,
  headers?: Record<string, string>,
): AuthFailure {
  const r: AuthFailure = { ok: false, status, code, message, reason };
  if (headers) r.headers = headers;
  return r;
}

/** A single-valued header: undefined when absent or empty, `null` when repeated (ambiguous). */
export function singleHeader(headers: AuthHeaders, name: string): string | undefined | null {
  return singleValue(headers[name]);
}

export function singleValue(v: string | string[] | undefined): string | undefined | null {
  if (v === undefined) return undefined;
  if (Array.isArray(v)) {
    const present = v.filter((x) => x !== '');
    if (present.length === 0) return undefined;
    if (present.length > 1) return null;
    return present[0];
  }
  return v === '' ? undefined : v;
}
