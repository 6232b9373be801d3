import type { IncomingHttpHeaders } from 'node:http';

/** RFC 9110 §7.6.1 connection-specific headers: meaningless once the request is stored. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Headers to store with a message: hop-by-hop ones (and those the Connection header names) dropped. */
export function storableHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = headers.connection
    ? new Set(headers.connection.split(',').map((h) => h.trim().toLowerCase()))
    : undefined;
  const out: Record<string, string | string[]> = {};
  // for…in over node's header object (own, enumerable, no prototype keys): no entries array per request.
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || named?.has(name)) continue;
    out[name] = value;
  }
  return out;
}
