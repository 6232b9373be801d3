import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { E, HookdError } from '../core/errors.js';
import type { Flow } from '../core/flow.js';
import type { ReceivedMessage } from '../core/message.js';
import type { RequestStore } from '../store/contracts.js';
import { storableHeaders } from './headers.js';
import type { ParsedPayload, PayloadParser } from './parsers/contract.js';
import { DEFAULT_PARSERS, parserFor } from './parsers/index.js';
import { parseMediaType } from './parsers/media-type.js';
import { requestIdFrom } from './request-id.js';

export interface IngressDeps {
  /** The flow when it exists and is started, else undefined (never tells which). */
  activeFlow(id: string): Flow | undefined;
  requests: RequestStore;
  payloadSizeLimit: number;
  defaultMaxAttempts: number;
  parsers?: readonly PayloadParser[];
  /** Called once per request that was committed (metrics). */
  onAccepted?(flowId: string, commitMs: number): void;
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

  const receive = async (request: FastifyRequest<{ Params: HookParams }>, reply: FastifyReply) => {
    const receivedAt = now();
    const { flowId } = request.params;
    const flow = deps.activeFlow(flowId);
    // Unknown and stopped flows take the same path: same body, same timing.
    if (flow === undefined) throw new HookdError(E.FLOW_NOT_FOUND, flowId);
    if (request.method === 'HEAD') return reply.code(200).send();

    const payload =
      request.method === 'GET' ? { body: null, rawBody: EMPTY } : await readPayload(request, parsers, deps.payloadSizeLimit);
    const suffix = request.params['*'];
    const message: ReceivedMessage = {
      id: requestIdFrom(request.headers['x-request-id']),
      flowId,
      receivedAt,
      method: request.method,
      path: suffix ? `/${suffix}` : '',
      query: request.query as Record<string, string | string[]>,
      headers: storableHeaders(request.headers),
      contentType: request.headers['content-type'] ?? null,
      body: payload.body,
      rawBody: payload.rawBody,
      clientIp: request.ip,
    };
    if (payload.attachments && payload.attachments.length > 0) message.attachments = payload.attachments;

    await deps.requests.accept(message, { maxAttempts: flow.retry?.maxAttempts ?? deps.defaultMaxAttempts });
    deps.onAccepted?.(flowId, now() - receivedAt);
    return sendFeedback(reply, flow, message.id);
  };

  for (const url of ['/hook/:flowId', '/hook/:flowId/*']) {
    app.route<{ Params: HookParams }>({ method: ['HEAD', 'GET', 'POST', 'PUT', 'PATCH'], url, handler: receive });
  }
}

async function readPayload(
  request: FastifyRequest,
  parsers: readonly PayloadParser[],
  limit: number,
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
  return parserFor(media, parsers).read({ stream: request.raw, contentType, media, payloadSizeLimit: limit });
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
