import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { E, type ErrorSpec, HookdError } from '../core/errors.js';
import { answeredBefore } from './connection-order.js';

/** How long an error answer waits for the answers of well-formed requests before it (connection-order.ts). */
const WAIT_FOR_EARLIER_MS = 30_000;

/**
 * Errors Node's HTTP parser and its request timeout raise before any route runs (fastify's
 * `clientErrorHandler`), in hookd's error shape `{"error": CODE, "message"}` instead of fastify's.
 * Requests that came whole before the malformed one on the connection (pipelined) get their
 * answers first: they ran (a webhook was stored), and cutting their answers off would have their
 * sender send them again.
 */
export function clientErrorHandler(answered: (socket: Socket) => boolean): (err: NodeJS.ErrnoException, socket: Socket) => void {
  const failed = new WeakSet<Socket>();
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    // The parser, once failed, may report more bytes again: one answer.
    if (failed.has(socket)) return;
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
    const answer = `HTTP/1.1 ${e.statusCode} ${STATUS_CODES[e.statusCode]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
    failed.add(socket);
    socket.pause();
    void answeredBefore(socket, WAIT_FOR_EARLIER_MS).then(() => {
      if (socket.destroyed) return;
      // Not after an answer that closed the connection (`Connection: close`): nothing more to say.
      if (!socket.writable) return void socket.destroy();
      // end, not destroy: the answers before it may still be in the socket's buffer.
      socket.end(answer, () => socket.destroy());
    });
  };
}

/** fastify's own refusals before routing (a malformed URL, an over-long path parameter), in hookd's shape. */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = err.statusCode ?? 400;
  const code = status === 414 ? E.URI_TOO_LONG.code : status >= 500 ? E.INTERNAL.code : E.BAD_REQUEST.code;
  void reply.code(status).send({ error: code, message: status >= 500 ? E.INTERNAL.message : err.message });
}
