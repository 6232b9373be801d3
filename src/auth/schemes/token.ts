import type { TokenAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import { type AuthHeaders, OK, malformed, mismatch, missing, singleHeader, singleValue } from '../result.js';
import { anyEqual } from '../timing-safe.js';
import { type BodyVerifier, plainVerifier } from './scheme.js';

export const TOKEN_HEADER = 'x-webhook-token';
export const TOKEN_QUERY_PARAMS = ['token', 'secret'] as const;
export const TOKEN_BODY_FIELD = 'token';

/**
 * A shared token, from wherever senders put one: `x-webhook-token`, `Authorization: Bearer`,
 * `?token=` / `?secret=`, or a top-level `token` field of a JSON or form body. Any of the present
 * candidates may match (all are compared); a repeated source is malformed.
 */
export function tokenVerifier(auth: TokenAuthDef, headers: AuthHeaders): BodyVerifier {
  return plainVerifier((req) => {
    const sources: Array<string | undefined | null> = [singleHeader(headers, TOKEN_HEADER), bearer(headers)];
    for (const p of TOKEN_QUERY_PARAMS) sources.push(singleValue(req.query[p]));
    if (isJsonOrForm(headers)) sources.push(bodyField(req.body));
    if (sources.includes(null)) return malformed('The token is given more than once in the same place');
    const candidates = sources.filter((v): v is string => typeof v === 'string');
    if (candidates.length === 0) return missing('A token is required');
    return anyEqual(candidates, secretValues(auth)) ? OK : mismatch();
  }, undefined, isJsonOrForm(headers));
}

function bearer(headers: AuthHeaders): string | undefined | null {
  const h = singleHeader(headers, 'authorization');
  if (h === null) return null;
  if (h === undefined) return undefined;
  const m = /^bearer[ \t]+(\S+)[ \t]*$/i.exec(h);
  return m ? m[1] : undefined;
}

function isJsonOrForm(headers: AuthHeaders): boolean {
  const ct = singleHeader(headers, 'content-type');
  if (typeof ct !== 'string') return false;
  const type = (ct.split(';')[0] ?? '').trim().toLowerCase();
  return (
    type === 'application/json' ||
    type.endsWith('+json') ||
    type === 'application/x-www-form-urlencoded' ||
    type === 'multipart/form-data'
  );
}

function bodyField(body: unknown): string | undefined | null {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return undefined;
  if (!Object.prototype.hasOwnProperty.call(body, TOKEN_BODY_FIELD)) return undefined;
  const v = (body as Record<string, unknown>)[TOKEN_BODY_FIELD];
  if (typeof v === 'string') return v === '' ? undefined : v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return singleValue(v as string[]);
  return undefined;
}
