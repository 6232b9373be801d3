import type { IncomingMessage } from 'node:http';

/**
 * RFC 9112 §3.2: an HTTP/1.1 request without Host, and any request with more than one Host line,
 * is a 400 — a proxy and hookd could each take another one. Node checks only the first (and
 * answers it with a bare 400 of its own: `requireHostHeader` is off so that hookd answers in its
 * error shape). The reason, or undefined when Host is as it should be.
 */
export function hostProblem(req: IncomingMessage): string | undefined {
  if (req.headers.host === undefined) {
    return req.httpVersion === '1.1' ? 'An HTTP/1.1 request needs a Host header' : undefined;
  }
  // rawHeaders: name, value, name, value…; Node keeps only the first Host in req.headers.
  const raw = req.rawHeaders;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host' && ++seen > 1) return 'A request must have one Host header, not several';
  }
  return undefined;
}
