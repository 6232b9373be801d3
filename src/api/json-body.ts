import type { FastifyInstance } from 'fastify';
import { E, HookdError } from '../core/errors.js';

/**
 * How the management API reads bodies: JSON only (`application/json`, `*+json`), with hookd's own
 * error codes and messages (the reason and where the JSON broke, the limit it exceeded). An empty
 * body is no body, whatever its Content-Type: many clients send `Content-Type: application/json`
 * (or a form type) with nothing on routes that take no body (start, stop, retry, DELETE).
 */
/** As fastify's own parser (secure-json-parse) does: no `__proto__`, no `constructor.prototype`. */
function refusePrototypeKeys(key: string, value: unknown): unknown {
  if (key === '__proto__' || (key === 'constructor' && value !== null && typeof value === 'object' && Object.prototype.hasOwnProperty.call(value, 'prototype'))) {
    throw new Error(`the key "${key}" is not allowed`);
  }
  return value;
}

export function jsonBodies(app: FastifyInstance, bodyLimit: number): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(/^application\/([\w.+-]+\+)?json(\s*;.*)?$/i, { parseAs: 'string', bodyLimit }, (_request, text, done) => {
    const body = text as string;
    if (body.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(body, refusePrototypeKeys) as unknown);
    } catch (err) {
      done(new HookdError(E.INVALID_BODY, 'JSON', (err as Error).message), undefined);
    }
  });
  app.addContentTypeParser('*', (request, payload, done) => {
    const length = request.headers['content-length'];
    if (request.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) return done(null, undefined);
    payload.resume(); // read and dropped, so that the client gets the answer
    done(new HookdError(E.UNSUPPORTED_MEDIA_TYPE, `The API takes JSON bodies (Content-Type: application/json), not ${request.headers['content-type'] ?? 'an untyped body'}`), undefined);
  });
}
