import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { E, HookdError } from '../core/errors.js';

/** Requests whose `Expect: 100-continue` is still unanswered: the ingress answers once it reads the body. */
const awaiting = new WeakSet<IncomingMessage>();

/**
 * `Expect: 100-continue` (curl sends it with any body over 1 MB): Node answers `100 Continue` at
 * once unless the server handles `checkContinue`. A webhook refused before its body is read — an
 * unknown flow, wrong credentials, a `Content-Length` over the limit — would first invite the
 * sender to upload it all. Under /hook/ the `100 Continue` is sent when the ingress starts reading
 * the body (continueIfExpected); a refusal before that is the only answer, and Node closes the
 * connection after it (the body was never sent). Every other route gets it at once, as before.
 */
export function deferContinueOfWebhooks(server: Server): void {
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    // A request without a body has nothing to hold back; answered without a 100 first, Node would
    // close its connection after the answer.
    const bodiless = req.headers['transfer-encoding'] === undefined && (req.headers['content-length'] ?? '0') === '0';
    if (req.url?.startsWith('/hook/') && !bodiless) awaiting.add(req);
    else res.writeContinue();
    server.emit('request', req, res);
  });
  // Any other expectation (RFC 9110 §10.1.1): 417, in hookd's error shape (Node's own has no body).
  // No route runs; the body, if any, is read and dropped by Node, and the connection stays usable.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const e = new HookdError(E.EXPECTATION_FAILED, req.headers.expect ?? '');
    const body = JSON.stringify({ error: e.code, message: e.message });
    res.writeHead(e.statusCode, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

/** About to read a webhook's body: send the `100 Continue` its sender waits for, if it asked for one. */
export function continueIfExpected(req: IncomingMessage, res: ServerResponse): void {
  if (!awaiting.delete(req)) return;
  res.writeContinue();
}
