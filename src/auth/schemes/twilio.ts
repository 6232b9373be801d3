import { createHash, createHmac, type Hash } from 'node:crypto';
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
 * Twilio (twilio.com/docs/usage/webhooks/webhooks-security): `X-Twilio-Signature` is the base64
 * HMAC, keyed with the account's auth token, of the URL Twilio called (query included) followed,
 * for a form POST, by every parameter's name and value, sorted by name (a repeated name's values
 * once each, sorted). A JSON body is not in the signature; its hex SHA-256 is, as `bodySHA256` in
 * the URL's query. The URL is checked with and without the scheme's default port (Twilio's SDKs
 * do the same: which one Twilio signed depends on how the URL was configured).
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
  const form = bodyHash === undefined && isForm(headers['content-type']);
  const hash: Hash | undefined = bodyHash === undefined ? undefined : createHash('sha256');
  const formChunks: Buffer[] = [];
  const keys = secretValues(auth);
  let verdict: AuthResult | undefined;
  return {
    early: undefined,
    needsBody: hash !== undefined || form,
    needsParsedBody: false,
    update(chunk) {
      if (verdict) throw new Error('BodyVerifier.update() called after finish()');
      hash?.update(chunk);
      if (form) formChunks.push(chunk);
    },
    finish() {
      if (verdict) return verdict;
      const params = form ? sortedParams(Buffer.concat(formChunks).toString('utf8')) : '';
      let key = -1;
      // Every candidate under every key is computed and compared: the timing tells nothing of which matched.
      for (const url of new Set([withoutPort(signedUrl), withDefaultPort(signedUrl)])) {
        keys.forEach((k, i) => {
          if (k.length === 0) return;
          const digest = createHmac(algorithm, k).update(url + params, 'utf8').digest();
          if (safeEqual(digest, signature) && key < 0) key = i;
        });
      }
      if (key < 0) verdict = mismatch('Signature does not match');
      // The body's hash is signed (in the URL): the body must be the one it names.
      else if (hash !== undefined && !safeEqual(hash.digest('hex'), (bodyHash ?? '').toLowerCase())) verdict = mismatch('Body does not match the signed bodySHA256');
      else verdict = { ok: true, key };
      return verdict;
    },
  };
}

function algorithmOf(settings: string | undefined): 'sha1' | 'sha256' | undefined {
  for (const part of (settings ?? '').split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== 'algorithm') continue;
    const name = part.slice(eq + 1).trim().toUpperCase();
    if (name === '' || name === 'HMAC_SHA1') return 'sha1';
    return name === 'HMAC_SHA256' ? 'sha256' : undefined;
  }
  return 'sha1';
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
