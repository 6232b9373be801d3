import { createHmac, type Hmac } from 'node:crypto';
import type { HmacAlgorithmDef } from '../schema.js';
import { type AuthFailure, type AuthHeaders, type AuthResult, malformed, mismatch, missing, singleHeader, staleTimestamp } from '../result.js';
import { anyEqual, safeEqual } from '../timing-safe.js';
import { type BodyVerifier, rejectedVerifier } from './scheme.js';

/** What a signature scheme reads from the headers before the body arrives. */
export interface SignedParts {
  /** Bytes authenticated before the body, e.g. `${t}.` for Stripe; '' for body-only schemes. */
  prefix: string;
  /** The signatures the sender supplied, decoded to bytes (several during a sender-side rotation). */
  signatures: Buffer[];
  /** Epoch seconds, for timestamped schemes. */
  timestamp?: number;
  /** Bytes authenticated after the body (HubSpot's v3 signs the timestamp last). */
  suffix?: string;
}

export interface MacSpec {
  algorithm: HmacAlgorithmDef;
  /** HMAC keys, one per configured secret (old + new while rotating). */
  keys: Buffer[];
  /** Required for timestamped schemes: allowed distance from now, both directions. */
  toleranceSeconds?: number;
}

export const DIGEST_BYTES: Record<HmacAlgorithmDef, number> = { sha1: 20, sha256: 32, sha512: 64 };

/** Most signatures accepted in one header; more is treated as malformed (bounds the work per request). */
export const MAX_SIGNATURES = 8;

/**
 * Streams the body into one HMAC per key, seeded with the header-derived prefix, and compares every
 * resulting digest with every supplied signature in constant time. The signature is checked before
 * the timestamp, so only a correctly signed request learns that its timestamp was the problem.
 */
export function macVerifier(spec: MacSpec, parsed: SignedParts | AuthFailure): BodyVerifier {
  if ('ok' in parsed) return rejectedVerifier(parsed);
  // An empty key would let anyone sign; such secrets never verify (their index is kept: `key`).
  const macs = spec.keys.flatMap((k, index): Array<{ index: number; mac: Hmac }> =>
    k.length > 0 ? [{ index, mac: createHmac(spec.algorithm, k).update(parsed.prefix, 'utf8') }] : [],
  );
  let verdict: AuthResult | undefined;
  return {
    early: undefined,
    needsBody: true,
    needsParsedBody: false,
    update(chunk) {
      if (verdict) throw new Error('BodyVerifier.update() called after finish()');
      for (const m of macs) m.mac.update(chunk);
    },
    finish(req) {
      if (verdict) return verdict;
      const suffix = parsed.suffix;
      const digests = macs.map((m) => (suffix === undefined ? m.mac : m.mac.update(suffix, 'utf8')).digest());
      if (!anyEqual(parsed.signatures, digests)) {
        verdict = mismatch('Signature does not match');
      } else if (parsed.timestamp !== undefined && !withinTolerance(parsed.timestamp, req.now, spec)) {
        verdict = staleTimestamp(spec.toleranceSeconds ?? 0);
      } else {
        // Which secret signed (once verified, telling it leaks nothing): a Zoom handshake answers under it.
        const signed = digests.findIndex((d) => parsed.signatures.some((s) => safeEqual(s, d)));
        verdict = { ok: true, key: macs[signed]!.index, signature: digests[signed]! };
      }
      return verdict;
    },
  };
}

function withinTolerance(timestampSeconds: number, nowMs: number, spec: MacSpec): boolean {
  const tolerance = spec.toleranceSeconds ?? 0;
  return Math.abs(nowMs / 1000 - timestampSeconds) <= tolerance;
}

/** Strict hex: even length, hex digits only (either case). */
export function decodeHex(s: string): Buffer | undefined {
  if (s.length === 0 || s.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(s)) return undefined;
  return Buffer.from(s, 'hex');
}

/** Standard or URL-safe base64, padding optional. */
export function decodeBase64(s: string): Buffer | undefined {
  if (s.length === 0 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) return undefined;
  const unpadded = s.replace(/=+$/, '');
  if (unpadded.length % 4 === 1) return undefined;
  return Buffer.from(unpadded, 'base64');
}

/** Unix seconds as sent by Stripe, Slack and Standard Webhooks. */
export function parseUnixSeconds(s: string): number | undefined {
  return /^\d{1,12}$/.test(s) ? Number(s) : undefined;
}

export function utf8Keys(secrets: string[]): Buffer[] {
  return secrets.map((s) => Buffer.from(s, 'utf8'));
}

/** `v0=<hex HMAC-SHA256 of v0:${ts}:${body}>` and a unix timestamp header: Slack's scheme, Zoom's under other names. */
export function parseV0Signature(headers: AuthHeaders, signatureHeader: string, timestampHeader: string, sender: string): SignedParts | AuthFailure {
  const sig = singleHeader(headers, signatureHeader);
  if (sig === undefined) return missing(`Signature header ${signatureHeader} is required`);
  const ts = singleHeader(headers, timestampHeader);
  if (sig === null || ts === null) return malformed(`${sender} signature headers are repeated`);
  if (ts === undefined) return malformed(`Header ${timestampHeader} is required`);
  const timestamp = parseUnixSeconds(ts.trim());
  if (timestamp === undefined) return malformed(`Header ${timestampHeader} is not a unix timestamp`);
  const m = /^v0=([0-9a-fA-F]{64})$/.exec(sig.trim());
  const digest = m ? decodeHex(m[1] ?? '') : undefined;
  if (!digest) return malformed(`Signature header ${signatureHeader} must be v0=<hex SHA-256>`);
  return { prefix: `v0:${ts.trim()}:`, signatures: [digest], timestamp };
}

/**
 * A signature header of `key=value` items (Stripe: `t=…,v1=…`; Paddle: `ts=…;h1=…`): one unix
 * timestamp and one or more hex HMAC-SHA256 signatures, over `${ts}${glue}${body}`. Items of other
 * keys are ignored; a signature item that is no digest (a sender's bug, a proxy) does not void a
 * valid one beside it.
 */
export function parseKeyedSignatures(
  headers: AuthHeaders,
  spec: { header: string; separator: string; timestampKey: string; signatureKey: string; glue: string },
): SignedParts | AuthFailure {
  const { header, timestampKey: tk, signatureKey: sk } = spec;
  const value = singleHeader(headers, header);
  if (value === undefined) return missing(`Signature header ${header} is required`);
  if (value === null) return malformed(`Signature header ${header} is repeated`);
  let t: string | undefined;
  let unreadable = false;
  const signatures: Buffer[] = [];
  for (const item of value.split(spec.separator)) {
    const eq = item.indexOf('=');
    if (eq < 0) continue;
    const key = item.slice(0, eq).trim();
    const val = item.slice(eq + 1).trim();
    if (key === tk) {
      if (t !== undefined) return malformed(`${header} has more than one timestamp`);
      t = val;
    } else if (key === sk) {
      const sig = decodeHex(val);
      if (sig?.length === DIGEST_BYTES.sha256) signatures.push(sig);
      else unreadable = true;
    }
  }
  const timestamp = t === undefined ? undefined : parseUnixSeconds(t);
  if (timestamp === undefined) return malformed(`${header} lacks a valid timestamp ${tk}=`);
  if (signatures.length === 0) return malformed(unreadable ? `${header} has no ${sk} that is a hex SHA-256 digest` : `${header} lacks a ${sk} signature`);
  if (signatures.length > MAX_SIGNATURES) return malformed(`${header} has too many signatures`);
  return { prefix: `${t}${spec.glue}`, signatures, timestamp };
}
