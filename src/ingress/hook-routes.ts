import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { corsPreflight, corsResponseHeaders } from '../auth/cors.js';
import type { AuthFailure, AuthFailureReason } from '../auth/result.js';
import { createBodyVerifier, probeMayReveal, redactBody, redactHeaders, redactQuery, redactRawBody } from '../auth/verify.js';
import { E, HookdError } from '../core/errors.js';
import type { Flow } from '../core/flow.js';
import type { ReceivedMessage } from '../core/message.js';
import type { RequestStore } from '../store/contracts.js';
import { storableHeaders } from './headers.js';
import type { ParsedPayload, PayloadParser } from './parsers/contract.js';
import { DEFAULT_PARSERS, parserFor } from './parsers/index.js';
import { parseMediaType } from './parsers/media-type.js';
import { requestIdFrom } from './request-id.js';
import { SenderGuard } from './sender-guard.js';

export interface IngressDeps {
  /** The flow when it exists and is started, else undefined (never tells which). */
  activeFlow(id: string): Flow | undefined;
  requests: RequestStore;
  payloadSizeLimit: number;
  defaultMaxAttempts: number;
  parsers?: readonly PayloadParser[];
  /** Called once per request that was committed (metrics). */
  onAccepted?(flowId: string, commitMs: number): void;
  /** Called for every rejected credential (metrics, logs); never given the secret. */
  onAuthFailure?(flowId: string, reason: AuthFailureReason | 'ip' | 'rate', clientIp: string): void;
}

interface HookParams {
  flowId: string;
  '*'?: string;
}

const EMPTY = Buffer.alloc(0);
const now = () => performance.timeOrigin + performance.now();

/**
 * HEAD|GET|POST|PUT|PATCH /hook/:flowId[/suffix] — Open Integration Hub semantics. The answer is
 * sent only after the request and its queue job are committed.
 */
export async function hookRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  const parsers = deps.parsers ?? DEFAULT_PARSERS;

  // Bodies are read by the handler, after the flow lookup, through the parser seam: fastify must
  // leave the stream alone. '*' also catches requests without a Content-Type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));

  const guard = new SenderGuard();
  const notFound = (flowId: string) => new HookdError(E.FLOW_NOT_FOUND, flowId);
  const rejected = (flowId: string, ip: string, failure: AuthFailure) => {
    deps.onAuthFailure?.(flowId, failure.reason, ip);
    const spec = failure.status === 401 ? E.UNAUTHORIZED : E.FORBIDDEN;
    return new HookdError(spec, failure.message).withHeaders(failure.headers);
  };

  const receive = async (request: FastifyRequest<{ Params: HookParams }>, reply: FastifyReply) => {
    const receivedAt = now();
    const { flowId } = request.params;
    const flow = deps.activeFlow(flowId);
    // Unknown and stopped flows take the same path: same body, same timing.
    if (flow === undefined) throw notFound(flowId);
    const { auth, cors } = flow.trigger;
    const isHead = request.method === 'HEAD';
    // HEAD gets CORS headers only once it may reveal the flow (an unknown flow has none).
    const corsHeaders = cors ? corsResponseHeaders(cors, request.headers.origin) : undefined;
    if (corsHeaders && !isHead) reply.headers(corsHeaders);
    try {
      guard.admit(flow, request.ip, Date.now());
    } catch (err) {
      deps.onAuthFailure?.(flowId, (err as HookdError).statusCode === 429 ? 'rate' : 'ip', request.ip);
      throw isHead ? notFound(flowId) : err;
    }
    if (isHead) {
      // A protected flow answers HEAD like an unknown one unless the probe carries valid credentials.
      const probe = { method: 'HEAD', headers: request.headers, query: request.query as Record<string, string>, rawBody: EMPTY, body: null, now: Date.now() };
      if (!probeMayReveal(auth, probe)) throw notFound(flowId);
      if (corsHeaders) reply.headers(corsHeaders);
      return reply.code(200).send();
    }

    const verifier = createBodyVerifier(auth, request.headers);
    if (verifier.early) throw rejected(flowId, request.ip, verifier.early);
    const onChunk = verifier.needsBody ? (chunk: Buffer) => verifier.update(chunk) : undefined;
    const payload =
      request.method === 'GET' ? { body: null, rawBody: EMPTY } : await readPayload(request, parsers, deps.payloadSizeLimit, onChunk);
    const query = request.query as Record<string, string | string[]>;
    const verdict = verifier.finish({ method: request.method, headers: request.headers, query, body: payload.body, now: Date.now() });
    if (!verdict.ok) throw rejected(flowId, request.ip, verdict);

    const suffix = request.params['*'];
    // Credentials that travel in headers, query or body fields are not kept: steps, execution
    // records and logs see `[redacted]`. The raw bytes stay exact (signatures need them) unless
    // they hold a body credential field: then they are rebuilt from the redacted body.
    const message: ReceivedMessage = {
      id: requestIdFrom(request.headers['x-request-id']),
      flowId,
      receivedAt,
      method: request.method,
      path: suffix ? `/${suffix}` : '',
      query: auth ? redactQuery(auth, query) : query,
      headers: storableHeaders(auth ? redactHeaders(auth, request.headers) : request.headers),
      contentType: request.headers['content-type'] ?? null,
      body: auth ? redactBody(auth, payload.body) : payload.body,
      rawBody: auth ? redactRawBody(auth, request.headers['content-type'], payload.body, payload.rawBody) : payload.rawBody,
      clientIp: request.ip,
    };
    if (payload.attachments && payload.attachments.length > 0) message.attachments = payload.attachments;

    await deps.requests.accept(message, { maxAttempts: flow.retry?.maxAttempts ?? deps.defaultMaxAttempts });
    deps.onAccepted?.(flowId, now() - receivedAt);
    return sendFeedback(reply, flow, message.id);
  };

  // CORS preflight: answered only for flows whose CORS config allows the origin and method;
  // anything else looks exactly like an unknown flow.
  const preflight = async (request: FastifyRequest<{ Params: HookParams }>, reply: FastifyReply) => {
    const { flowId } = request.params;
    const flow = deps.activeFlow(flowId);
    const method = request.headers['access-control-request-method'];
    const result = flow
      ? corsPreflight(flow.trigger.cors, flow.trigger.auth, { origin: request.headers.origin, requestMethod: Array.isArray(method) ? method[0] : method })
      : { ok: false as const };
    if (!result.ok) throw notFound(flowId);
    return reply.code(result.status).headers(result.headers).send();
  };

  for (const url of ['/hook/:flowId', '/hook/:flowId/*']) {
    app.route<{ Params: HookParams }>({ method: ['HEAD', 'GET', 'POST', 'PUT', 'PATCH'], url, handler: receive });
    app.route<{ Params: HookParams }>({ method: 'OPTIONS', url, handler: preflight });
  }
}

async function readPayload(
  request: FastifyRequest,
  parsers: readonly PayloadParser[],
  limit: number,
  onChunk: ((chunk: Buffer) => void) | undefined,
): Promise<ParsedPayload> {
  const contentType = request.headers['content-type'];
  const length = request.headers['content-length'];
  const hasBody = request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  if (contentType === undefined) {
    // A bodiless POST (a ping) is fine; bytes of unknown type are not.
    if (!hasBody) return { body: null, rawBody: EMPTY };
    throw new HookdError(E.UNSUPPORTED_MEDIA_TYPE, 'A request with a body needs a Content-Type header');
  }
  if (length !== undefined && Number(length) > limit) throw new HookdError(E.PAYLOAD_TOO_LARGE, limit);
  const media = parseMediaType(contentType);
  return parserFor(media, parsers).read({ stream: request.raw, contentType, media, payloadSizeLimit: limit, ...(onChunk ? { onChunk } : {}) });
}

/** 200 {requestId, message: "thank you"}, or the flow's pre-configured feedback. */
function sendFeedback(reply: FastifyReply, flow: Flow, requestId: string) {
  const configured = flow.trigger.response;
  reply.header('x-request-id', requestId);
  if (configured === undefined) {
    return reply.code(200).send({ requestId, message: 'thank you' });
  }
  reply.code(configured.status ?? 200);
  if (configured.headers) reply.headers(configured.headers);
  const body = configured.body;
  if (body === undefined) return reply.send({ requestId, message: 'thank you' });
  if (typeof body === 'string') {
    if (!reply.hasHeader('content-type')) reply.type('text/plain; charset=utf-8');
    return reply.send(body);
  }
  return reply.send(body);
}
