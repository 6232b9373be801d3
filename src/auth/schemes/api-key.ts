import type { ApiKeyAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import {
  type AuthFailure,
  type AuthHeaders,
  OK,
  malformed,
  mismatch,
  missing,
  singleHeader,
  singleValue,
} from '../result.js';
import { anyEqual } from '../timing-safe.js';
import { type BodyVerifier, plainVerifier, rejectedVerifier } from './scheme.js';

export const DEFAULT_API_KEY_HEADER = 'x-api-key';

/** Where an apiKey config looks: its header (default x-api-key unless `query` is set) and/or query parameter. */
export function apiKeyLocations(auth: ApiKeyAuthDef): { header?: string; query?: string } {
  const header = auth.header?.toLowerCase() ?? (auth.query === undefined ? DEFAULT_API_KEY_HEADER : undefined);
  const out: { header?: string; query?: string } = {};
  if (header !== undefined) out.header = header;
  if (auth.query !== undefined) out.query = auth.query;
  return out;
}

/** An API key in a header, or in a query parameter; when both are configured either may carry it. */
export function apiKeyVerifier(auth: ApiKeyAuthDef, headers: AuthHeaders): BodyVerifier {
  const where = apiKeyLocations(auth);
  const fromHeader = where.header === undefined ? undefined : singleHeader(headers, where.header);
  const what = [where.header && `header ${where.header}`, where.query && `query parameter ${where.query}`]
    .filter(Boolean)
    .join(' or ');
  if (fromHeader === null) return rejectedVerifier(malformed(`API key header ${where.header} is repeated`));
  // Header-only configs can decide before the body.
  const early: AuthFailure | undefined =
    where.query === undefined && fromHeader === undefined ? missing(`An API key is required in ${what}`) : undefined;
  return plainVerifier((req) => {
    const fromQuery = where.query === undefined ? undefined : singleValue(req.query[where.query]);
    if (fromQuery === null) return malformed(`API key query parameter ${where.query} is repeated`);
    const candidates = [fromHeader, fromQuery].filter((v): v is string => typeof v === 'string');
    if (candidates.length === 0) return missing(`An API key is required in ${what}`);
    return anyEqual(candidates, secretValues(auth)) ? OK : mismatch();
  }, early);
}
