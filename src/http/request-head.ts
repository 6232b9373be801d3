import type { IncomingMessage } from 'node:http';
import { E, HookdError } from '../core/errors.js';

/**
 * Header lines a request may have. Past Node's `maxHeadersCount` the lines after the first
 * thousand or so are dropped without a word — Content-Type and Content-Length among them: a body
 * the parser still framed by that length was read as none and answered 200. hookd sets the limit
 * (app.ts) and refuses a request that reaches it (431) instead.
 */
export const MAX_HEADER_LINES = 1000;

/**
 * What is wrong with a request's head before any route looks at it, or undefined:
 * - RFC 9112 §3.2: an HTTP/1.1 request without Host, and any request with more than one Host line,
 *   is a 400 (a proxy and hookd could each take another one). Node checks only the first, with a
 *   bare 400 of its own: its `requireHostHeader` is off so that hookd answers in its error shape.
 * - MAX_HEADER_LINES or more header lines: 431 (some would have been dropped).
 */
export function requestHeadProblem(req: IncomingMessage): HookdError | undefined {
  // rawHeaders: name, value, name, value…
  const raw = req.rawHeaders;
  if (raw.length >= 2 * MAX_HEADER_LINES) {
    return new HookdError(E.HEADERS_TOO_LARGE).withHeaders({ connection: 'close' });
  }
  if (req.headers.host === undefined) {
    return req.httpVersion === '1.1' ? new HookdError(E.BAD_REQUEST, 'An HTTP/1.1 request needs a Host header').withHeaders({ connection: 'close' }) : undefined;
  }
  // Node keeps only the first Host in req.headers.
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host' && ++seen > 1) {
      return new HookdError(E.BAD_REQUEST, 'A request must have one Host header, not several').withHeaders({ connection: 'close' });
    }
  }
  return undefined;
}
