import { SIGNATURE_HEADER_NAME } from '../core/message.js';
import type { WebhookAuth } from './schema.js';
import { apiKeyLocations } from './schemes/api-key.js';
import { TOKEN_BODY_FIELD, TOKEN_HEADER, TOKEN_QUERY_PARAMS } from './schemes/token.js';

export const REDACTED = '[redacted]';

/**
 * A copy of a JSON-like value with the values under keys `isSecret` names replaced by REDACTED, to
 * 32 levels of nesting (deeper values are left as they are): log step inputs, what read tokens see.
 * An object holding SIGNATURE_HEADER_NAME (a message's headers, wherever a step put them) has the
 * key it names redacted too — in that object only: a sender's body can hide nothing but its own
 * neighbouring field.
 */
export function redactKeysDeep(value: unknown, isSecret: (key: string) => boolean, depth = 0): unknown {
  if (value === null || typeof value !== 'object' || depth > 32) return value;
  if (Array.isArray(value)) return value.map((v) => redactKeysDeep(v, isSecret, depth + 1));
  const own = (value as Record<string, unknown>)[SIGNATURE_HEADER_NAME];
  const named = typeof own === 'string' ? own.toLowerCase() : undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    // The marker itself only names a header: never taken for a secret (its name holds "signature").
    const secret = k !== SIGNATURE_HEADER_NAME && (isSecret(k) || (named !== undefined && k.toLowerCase() === named));
    setOwn(out, k, secret ? REDACTED : redactKeysDeep(v, isSecret, depth + 1));
  }
  return out;
}

const MARKED = new RegExp(`"${SIGNATURE_HEADER_NAME}"\\s*:\\s*"([^"\\\\]+)"`, 'g');

/** The header names SIGNATURE_HEADER_NAME gives in a JSON text, whole or cut (a truncated preview: applied to every key there). */
export function markedSignatureHeaders(json: string): string[] {
  const names: string[] = [];
  if (!json.includes(SIGNATURE_HEADER_NAME)) return names;
  for (const m of json.matchAll(MARKED)) names.push(m[1]!.toLowerCase());
  return names;
}


/** Where a config's credentials travel, so stored messages and logs can drop them. */
export interface CredentialLocations {
  /** Lower-cased header names. */
  headers: string[];
  query: string[];
  /** Top-level fields of a JSON or form body. */
  bodyFields: string[];
}

/**
 * Signature headers (X-Hub-Signature-256, Stripe-Signature…) are not listed: a MAC reveals nothing
 * of its key, and keeping it lets a stored message be re-verified later.
 */
export function credentialLocations(auth: WebhookAuth | undefined): CredentialLocations {
  const out: CredentialLocations = { headers: [], query: [], bodyFields: [] };
  switch (auth?.type) {
    case 'basic':
      out.headers.push('authorization');
      break;
    case 'apiKey': {
      const where = apiKeyLocations(auth);
      if (where.header) out.headers.push(where.header);
      if (where.query) out.query.push(where.query);
      break;
    }
    case 'token':
      out.headers.push(TOKEN_HEADER, 'authorization');
      out.query.push(...TOKEN_QUERY_PARAMS);
      out.bodyFields.push(TOKEN_BODY_FIELD);
      break;
    default:
      break;
  }
  return out;
}

/** A copy of the headers with the credential-bearing values replaced by `[redacted]`. */
export function redactHeaders<V extends string | string[] | undefined>(
  auth: WebhookAuth | undefined,
  headers: Record<string, V>,
): Record<string, V> {
  return redactKeys(headers, credentialLocations(auth).headers, (k) => k.toLowerCase());
}

/** A copy of the query with credential parameters replaced by `[redacted]`. */
export function redactQuery<V extends string | string[]>(
  auth: WebhookAuth | undefined,
  query: Record<string, V>,
): Record<string, V> {
  return redactKeys(query, credentialLocations(auth).query, (k) => k);
}

/**
 * A copy of a parsed JSON/form body with top-level credential fields replaced; other bodies are
 * returned as they are. The raw bytes still hold the token: a caller storing rawBody for a
 * token-authenticated flow must rebuild or drop it.
 */
export function redactBody(auth: WebhookAuth | undefined, body: unknown): unknown {
  const fields = credentialLocations(auth).bodyFields;
  if (fields.length === 0 || body === null || typeof body !== 'object' || Array.isArray(body)) return body;
  return redactKeys(body as Record<string, unknown>, fields, (k) => k);
}

/**
 * The raw bytes to store with a redacted body. A credential field in a JSON or form body would
 * otherwise stay readable in rawBody (and the database): when the parsed body holds one, the bytes
 * are rebuilt from the redacted body (JSON, or urlencoded form); other types are dropped (empty).
 * Schemes that put a credential in the body sign nothing, so no signature needs the original bytes.
 * Without such a field the bytes are returned untouched.
 */
export function redactRawBody(auth: WebhookAuth | undefined, contentType: string | undefined, body: unknown, rawBody: Buffer): Buffer {
  const fields = credentialLocations(auth).bodyFields;
  if (fields.length === 0 || body === null || typeof body !== 'object' || Array.isArray(body)) return rawBody;
  if (!fields.some((f) => Object.prototype.hasOwnProperty.call(body, f))) return rawBody;
  const redacted = redactBody(auth, body) as Record<string, unknown>;
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/json' || type.endsWith('+json')) return Buffer.from(JSON.stringify(redacted), 'utf8');
  if (type === 'application/x-www-form-urlencoded') {
    const form = new URLSearchParams();
    for (const [k, v] of Object.entries(redacted)) for (const x of Array.isArray(v) ? v : [v]) form.append(k, String(x));
    return Buffer.from(form.toString(), 'utf8');
  }
  return Buffer.alloc(0);
}

function redactKeys<V>(obj: Record<string, V>, names: string[], norm: (k: string) => string): Record<string, V> {
  if (names.length === 0) return obj;
  const drop = new Set(names);
  const out: Record<string, V> = {};
  for (const [k, v] of Object.entries(obj)) {
    setOwn(out, k, !drop.has(norm(k)) || v === undefined ? v : ((Array.isArray(v) ? v.map(() => REDACTED) : REDACTED) as V));
  }
  return out;
}

/**
 * `out[k] = v`, except that a key `__proto__` (data in a JSON or form body, a query) stays a key:
 * assigned, it would set the copy's prototype and vanish from what is stored and logged.
 */
function setOwn<V>(out: Record<string, V>, k: string, v: V): void {
  if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  else out[k] = v;
}
