import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { E, type ErrorSpec, HookdError } from '../core/errors.js';

/**
 * Errors Node's HTTP parser and its request timeout raise before any route runs (fastify's
 * `clientErrorHandler`), in hookd's error shape `{"error": CODE, "message"}` instead of fastify's.
 */
export function clientErrorHandler(answered: (socket: Socket) => boolean): (err: NodeJS.ErrnoException, socket: Socket) => void {
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    // Answered already (a refusal mid-body, its rest being dropped: ingress/linger.ts): Node's
    // request timeout may still fire; a second, unasked-for answer (a 408 after the 413) would be
    // taken by a keep-alive client as the answer to its next request. Closed without one.
    if (answered(socket)) {
      socket.destroy();
      return;
    }
    const spec: ErrorSpec =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? E.REQUEST_TIMEOUT : err.code === 'HPE_HEADER_OVERFLOW' ? E.HEADERS_TOO_LARGE : E.BAD_REQUEST;
    const e = new HookdError(spec, `malformed HTTP request (${err.code ?? 'parse error'})`);
    const body = JSON.stringify({ error: e.code, message: e.message });
    if (socket.writable) {
      socket.write(
        `HTTP/1.1 ${e.statusCode} ${STATUS_CODES[e.statusCode]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy();
  };
}

/** fastify's own refusals before routing (a malformed URL, an over-long path parameter), in hookd's shape. */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = err.statusCode ?? 400;
  const code = status === 414 ? E.URI_TOO_LONG.code : status >= 500 ? E.INTERNAL.code : E.BAD_REQUEST.code;
  void reply.code(status).send({ error: code, message: status >= 500 ? E.INTERNAL.message : err.message });
}
