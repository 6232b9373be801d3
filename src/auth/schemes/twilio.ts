import { createHash, createHmac, type Hash } from 'node:crypto';
import { parse as parseLegacyQuery, stringify as stringifyLegacyQuery } from 'node:querystring';
import type { TwilioAuthDef } from '../schema.js';
import { secretValues } from '../schema.js';
import { type AuthHeaders, type AuthResult, malformed, mismatch, missing, singleHeader } from '../result.js';
import { safeEqual } from '../timing-safe.js';
import { decodeBase64, DIGEST_BYTES } from './mac.js';
import { type BodyVerifier, rejectedVerifier } from './scheme.js';

export const TWILIO_SIGNATURE_HEADER = 'x-twilio-signature';
/** Names the algorithm of a webhook signed with a SharedKey (`key=…,algorithm=HMAC_SHA256`); absent: HMAC-SHA1. */
export const TWILIO_SETTINGS_HEADER = 'x-twilio-webhooks-signature-settings';
/**
 * A signed form is read whole and sorted before its signature can be checked: a caller without
 * credentials must not make that expensive. Twilio's forms are a few KB with tens of parameters.
 */
export const TWILIO_MAX_FORM_BYTES = 128 * 1024;
export const TWILIO_MAX_FORM_PARAMS = 1_000;

/**
 * Twilio (twilio.com/docs/usage/webhooks/webhooks-security): `X-Twilio-Signature` is the base64
 * HMAC, keyed with the account's auth token (or a SharedKey secret), of the URL Twilio called
 * (query included) followed, for a form POST, by every parameter's name and value, sorted by name
 * (a repeated name's values once each, sorted). A JSON body is not in the signature; its hex
 * SHA-256 is, as `bodySHA256` in the URL's query. Any other body is covered by nothing: one with
 * bytes is refused (otherwise a signature of a GET, or of a form whose parameters were moved into
 * the path, would carry a body of the caller's choosing). The URL is checked as Twilio's SDK checks
 * it: as called, with and without the scheme's default port, then normalized (`new URL`) and with
 * the query encoded as node's legacy querystring does.
 *
 * `signedUrl` is the URL as the sender called it (the ingress builds it from PUBLIC_URL, or the
 * credential's `url`, and the request's path and query as received, unnormalized). No timestamp is
 * signed: a captured request verifies forever (docs/credentials.md).
 */
export function twilioVerifier(auth: TwilioAuthDef, headers: AuthHeaders, signedUrl: string | undefined): BodyVerifier {
  const header = singleHeader(headers, TWILIO_SIGNATURE_HEADER);
  if (header === undefined) return rejectedVerifier(missing(`Signature header ${TWILIO_SIGNATURE_HEADER} is required`));
  if (header === null) return rejectedVerifier(malformed(`Signature header ${TWILIO_SIGNATURE_HEADER} is repeated`));
  const settings = singleHeader(headers, TWILIO_SETTINGS_HEADER);
  if (settings === null) return rejectedVerifier(malformed(`Header ${TWILIO_SETTINGS_HEADER} is repeated`));
  const algorithm = algorithmOf(settings);
  if (algorithm === undefined) return rejectedVerifier(malformed(`Header ${TWILIO_SETTINGS_HEADER} names an algorithm other than HMAC_SHA1 and HMAC_SHA256`));
  const signature = decodeBase64(header.trim());
  if (signature?.length !== DIGEST_BYTES[algorithm]) return rejectedVerifier(malformed(`Signature header ${TWILIO_SIGNATURE_HEADER} must be a base64 ${algorithm.toUpperCase()} digest`));
  // Without the URL nothing can verify (a HEAD probe of a caller that gave none): as a wrong signature.
  if (signedUrl === undefined) return rejectedVerifier(mismatch('Signature does not match'));

  const bodyHash = queryParam(signedUrl, 'bodySHA256');
  const contentType = headers['content-type'];
  const form = bodyHash === undefined && isForm(contentType);
  // Twilio's forms are UTF-8: the signature is checked over that decoding, and the form parser
  // must not store another one (the charset parameter is not signed).
  if (form && !utf8Charset(contentType)) return rejectedVerifier(malformed('Twilio signs forms in UTF-8; the charset parameter names another'));
  const hash: Hash | undefined = bodyHash === undefined ? undefined : createHash('sha256');
  const formChunks: Buffer[] = [];
  let bytes = 0;
  const keys = secretValues(auth);
  let verdict: AuthResult | undefined;
  return {
    early: undefined,
    // Every body is looked at: a form's, bodySHA256's, and any other must have no bytes.
    needsBody: true,
    needsParsedBody: false,
    update(chunk) {
      if (verdict) throw new Error('BodyVerifier.update() called after finish()');
      bytes += chunk.length;
      hash?.update(chunk);
      if (form && bytes <= TWILIO_MAX_FORM_BYTES) formChunks.push(chunk);
    },
    finish() {
      if (verdict) return verdict;
      if (hash === undefined && !form && bytes > 0) {
        verdict = mismatch('Twilio signs a body only as a form, or by bodySHA256 in the URL');
        return verdict;
      }
      let params = '';
      if (form) {
        const text = bytes > TWILIO_MAX_FORM_BYTES ? undefined : Buffer.concat(formChunks).toString('utf8');
        if (text === undefined || countOf(text, '&') + 1 > TWILIO_MAX_FORM_PARAMS) {
          verdict = malformed(`A Twilio form is at most ${TWILIO_MAX_FORM_BYTES / 1024} KiB and ${TWILIO_MAX_FORM_PARAMS} parameters`);
          return verdict;
        }
        params = sortedParams(text);
      }
      let key = -1;
      // Every candidate under every key is computed and compared: the timing tells nothing of which matched.
      for (const url of candidateUrls(signedUrl)) {
        keys.forEach((k, i) => {
          if (k.length === 0) return;
          const digest = createHmac(algorithm, k).update(url + params, 'utf8').digest();
          if (safeEqual(digest, signature) && key < 0) key = i;
        });
      }
      if (key < 0) verdict = mismatch('Signature does not match');
      // The body's hash is signed (in the URL): the body must be the one it names.
      else if (hash !== undefined && !safeEqual(hash.digest('hex'), (bodyHash ?? '').toLowerCase())) verdict = mismatch('Body does not match the signed bodySHA256');
      else verdict = { ok: true, key, signature };
      return verdict;
    },
  };
}

/** As the SDK's getSignatureAlgorithm: the first non-empty `algorithm=`; none: HMAC-SHA1. */
function algorithmOf(settings: string | undefined): 'sha1' | 'sha256' | undefined {
  for (const part of (settings ?? '').split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== 'algorithm') continue;
    const name = part.slice(eq + 1).trim().toUpperCase();
    if (name === '') continue;
    if (name === 'HMAC_SHA1') return 'sha1';
    return name === 'HMAC_SHA256' ? 'sha256' : undefined;
  }
  return 'sha1';
}

/**
 * The URLs the SDK's validateRequest accepts a signature for: as called, without its port and with
 * the scheme's default one; then normalized by `new URL()` (percent-encoding, case of the scheme
 * and host), with and without the port, each also with its query encoded as node's legacy
 * querystring module does.
 */
function candidateUrls(url: string): Set<string> {
  const out = new Set([withoutPort(url), withDefaultPort(url)]);
  let normalized: string;
  try {
    normalized = new URL(url).toString();
  } catch {
    return out;
  }
  for (const u of [withoutPort(normalized), withDefaultPort(normalized)]) {
    out.add(u);
    out.add(withLegacyQuery(u));
  }
  return out;
}

function withLegacyQuery(url: string): string {
  const q = url.indexOf('?');
  if (q < 0 || q === url.length - 1) return url;
  return `${url.slice(0, q)}?${stringifyLegacyQuery(parseLegacyQuery(url.slice(q + 1)))}`;
}

function utf8Charset(contentType: string | string[] | undefined): boolean {
  const value = Array.isArray(contentType) ? contentType[0] : contentType;
  const m = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(value ?? '');
  return m === null || /^utf-?8$/i.test(m[1]!);
}

function countOf(text: string, char: string): number {
  let n = 0;
  for (let i = text.indexOf(char); i >= 0; i = text.indexOf(char, i + 1)) n++;
  return n;
}

function isForm(contentType: string | string[] | undefined): boolean {
  const value = Array.isArray(contentType) ? contentType[0] : contentType;
  return value !== undefined && value.split(';')[0]!.trim().toLowerCase() === 'application/x-www-form-urlencoded';
}

function queryParam(url: string, name: string): string | undefined {
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  return new URLSearchParams(url.slice(q + 1)).get(name) ?? undefined;
}

/** `name + value` of every form parameter, names sorted; a repeated name's distinct values sorted. */
export function sortedParams(form: string): string {
  const byName = new Map<string, Set<string>>();
  for (const [name, value] of new URLSearchParams(form)) {
    let values = byName.get(name);
    if (values === undefined) byName.set(name, (values = new Set()));
    values.add(value);
  }
  let out = '';
  for (const name of [...byName.keys()].sort()) {
    for (const value of [...byName.get(name)!].sort()) out += name + value;
  }
  return out;
}

/** scheme://[userinfo@]host[:port] and the rest, split without normalizing (the signature is over the exact characters). */
const AUTHORITY = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/is;

function splitAuthority(url: string): { scheme: string; userInfo: string; host: string; port: string; rest: string } | undefined {
  const m = AUTHORITY.exec(url);
  if (!m) return undefined;
  const authority = m[2]!;
  const at = authority.lastIndexOf('@');
  const hostPort = authority.slice(at + 1);
  // A colon starts the port only after an IPv6 literal's closing bracket.
  const colon = hostPort.indexOf(':', hostPort.lastIndexOf(']') + 1);
  return {
    scheme: m[1]!,
    userInfo: authority.slice(0, at + 1),
    host: colon < 0 ? hostPort : hostPort.slice(0, colon),
    port: colon < 0 ? '' : hostPort.slice(colon),
    rest: m[3]!,
  };
}

function withoutPort(url: string): string {
  const p = splitAuthority(url);
  return p === undefined ? url : p.scheme + p.userInfo + p.host + p.rest;
}

function withDefaultPort(url: string): string {
  const p = splitAuthority(url);
  if (p === undefined || p.port !== '') return url;
  return p.scheme + p.userInfo + p.host + (p.scheme.toLowerCase() === 'https://' ? ':443' : ':80') + p.rest;
}
