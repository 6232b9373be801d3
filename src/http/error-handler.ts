import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import { E, isHookdError } from '../core/errors.js';
import { RepeatedLog } from '../core/repeated-log.js';
import { debugEnabled } from './request-log.js';
import { describeSchemaErrors, type SchemaError } from '../core/schema-errors.js';

/**
 * One error shape for every route: `{"error": CODE, "message": …}` — except the ingress 404, which
 * keeps Open Integration Hub's `{"error": "Flow <id> either does not exist or is inactive."}` so
 * OIH senders and tests see what they know.
 */
export function installErrorHandling(app: FastifyInstance): void {
  // A 503 comes once per request while the store or broker is down: one line per code per window.
  const repeated = new RepeatedLog(app.log);
  app.addHook('onClose', async () => repeated.flush());
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (isHookdError(err)) {
      if (err.retryAfter !== undefined) reply.header('retry-after', String(err.retryAfter));
      // A 413 of the ingress says itself whether the connection closes (ingress/linger.ts).
      if (err.headers) reply.headers(err.headers);
      // LOG_LEVEL=debug: why a request was refused (a sender's 4xx), beside its 'request completed'.
      if (err.statusCode < 500) refused(request, err.statusCode, err.code, err.message);
      if (err.statusCode >= 500) {
        // The message stays the same for the code (the summary counts them all); the reason, which
        // changes along an outage (a timeout, then a refused connection), is each one's own.
        repeated.warn(
          err.code,
          { reqId: request.id, method: request.method, url: request.url.split('?')[0], code: err.code, reason: err.message, err },
          `answered ${err.statusCode} ${err.code}`,
        );
      }
      const body =
        err.code === E.FLOW_NOT_FOUND.code
          ? { error: err.message }
          : { error: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) };
      return reply.code(err.statusCode).send(body);
    }
    if (err.validation) {
      // As flow definitions are described: one line per path, every rule, allowed values listed.
      const problems = describeSchemaErrors(err.validation as unknown as SchemaError[], `/${err.validationContext ?? ''}`);
      return reply.code(400).send({ error: E.VALIDATION_FAILED.code, message: `Invalid request: ${problems.join('; ')}`, details: problems });
    }
    const status = err.statusCode ?? 500;
    if (status < 500) {
      refused(request, status, registryCode(err), err.message);
      if (status === 413) {
        reply.header('connection', 'close');
        const limit = request.routeOptions.bodyLimit;
        if (limit !== undefined) return reply.code(413).send({ error: E.PAYLOAD_TOO_LARGE.code, message: `Payload exceeds the limit of ${limit} bytes` });
      }
      return reply.code(status).send({ error: registryCode(err), message: clientMessage(err, request.headers['content-type']) });
    }
    request.log.error({ err }, 'unhandled error');
    return reply.code(500).send({ error: E.INTERNAL.code, message: E.INTERNAL.message });
  });

  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: E.NOT_FOUND.code, message: `Route ${request.method} ${request.url.split('?')[0]} not found` }),
  );
}

function refused(request: FastifyRequest, status: number, code: string, message: string): void {
  if (debugEnabled(request.log)) request.log.debug({ method: request.method, url: request.url.split('?')[0], status, code, message }, 'request refused');
}

/** fastify's message, unless it says less than the request shows (its 415 for a malformed Content-Type). */
function clientMessage(err: FastifyError, contentType: string | undefined): string {
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return `Content-Type ${JSON.stringify(contentType ?? '')} is not a media type (type/subtype, e.g. application/json)`;
  }
  return err.message;
}

/**
 * fastify's own client errors (the API's body parsing) under the codes of hookd's registry, so a
 * client sees one set of codes whichever layer refused the request.
 */
function registryCode(err: FastifyError): string {
  switch (err.code) {
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return E.INVALID_BODY.code;
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_TYPE':
      return E.UNSUPPORTED_MEDIA_TYPE.code;
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return E.PAYLOAD_TOO_LARGE.code;
    default:
      // A JSON syntax error from the parser has no code of its own.
      return err.statusCode === 400 && err instanceof SyntaxError ? E.INVALID_BODY.code : (err.code ?? 'BAD_REQUEST');
  }
}
