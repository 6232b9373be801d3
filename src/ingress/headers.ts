import type { IncomingHttpHeaders } from 'node:http';
import { REPLAY_OF_HEADER, SIGNATURE_HEADER_NAME } from '../core/message.js';

/**
 * RFC 9110 §7.6.1 connection-specific headers: meaningless once the request is stored. Every
 * `Proxy-*` header too (Proxy-Authorization, Proxy-Connection, a proxy's own): meant for a proxy on
 * the way, never for the flow — and a proxy's credentials are no business of the stored request.
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const isProxyHeader = (name: string) => name.startsWith('proxy-');

/** What describes the bytes as sent, not as stored, once their content coding is removed. */
const ENCODED_BODY = new Set(['content-encoding', 'content-length']);

/**
 * Headers to store with a message: hop-by-hop ones (and those the Connection header names, and
 * Proxy-*) dropped, and, when the body was stored decoded (gzip…), Content-Encoding and Content-Length: they
 * described the compressed bytes (a replay sends the stored bytes as they are). `signatureHeader`:
 * an hmac flow's own signature header name, stored as SIGNATURE_HEADER_NAME. A sender's own
 * values of hookd's marker headers (that one, REPLAY_OF_HEADER) are dropped.
 */
export function storableHeaders(headers: IncomingHttpHeaders, bodyDecoded = false, signatureHeader?: string): Record<string, string | string[]> {
  const named = headers.connection
    ? new Set(headers.connection.split(',').map((h) => h.trim().toLowerCase()))
    : undefined;
  const out: Record<string, string | string[]> = {};
  // First: a reader of a cut-off preview of these headers meets it before the header it names.
  if (signatureHeader !== undefined) out[SIGNATURE_HEADER_NAME] = signatureHeader;
  // for…in over node's header object (own, enumerable, no prototype keys): no entries array per request.
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || isProxyHeader(name) || named?.has(name) || (bodyDecoded && ENCODED_BODY.has(name)) || name === SIGNATURE_HEADER_NAME || name === REPLAY_OF_HEADER) continue;
    out[name] = value;
  }
  return out;
}
