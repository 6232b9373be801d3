import { METHODS } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { corsPreflight, corsResponseHeaders } from '../auth/cors.js';
import type { AuthFailure, AuthFailureReason } from '../auth/result.js';
import { REDACTED } from '../auth/redact.js';
import { ownSignatureHeader } from '../auth/schemes/hmac.js';
import type { WebhookAuth } from '../auth/schema.js';
import {
  createBodyVerifier,
  credentialLocations,
  probeMayReveal,
  redactBody,
  redactHeaders,
  redactQuery,
  redactRawBody,
  verifyRequest,
  type SignedTarget,
} from '../auth/verify.js';
import type { AttachmentStore } from '../attachments/contract.js';
import { DEFAULT_ATTACHMENT_SIZE_LIMIT } from '../attachments/contract.js';
import { preciseNow } from '../core/clock.js';
import { E, HookdError, isHookdError } from '../core/errors.js';
import type { Flow } from '../core/flow.js';
import type { CloudEvent, ReceivedMessage } from '../core/message.js';
import type { AcceptOutcome, RequestStore } from '../store/contracts.js';
import { storableHeaders } from './headers.js';
import type { ParsedPayload, PayloadContext, PayloadLimits, PayloadParser } from './parsers/contract.js';
import { attachmentIdsOf, DEFAULT_PARSERS, maxBodyBytes, parsePayload, parserFor } from './parsers/index.js';
import { parseMediaType } from './parsers/media-type.js';
import { applyPayloadType, type PayloadLike } from './parsers/payload-type.js';
import { decodedBody, type DecodedBody } from './content-encoding.js';
import { handshakeBeforeCredentials, handshakeInBody, handshakeInHeaders } from './handshake.js';
import { ASANA_SECRET_HEADER, ASANA_WINDOW_CLOSED, asanaHandshake, awaitsAsanaSecret } from './asana-handshake.js';
import { continueIfExpected, deferContinueOfWebhooks } from './expect-continue.js';
import { lingerAfterRefusal } from './linger.js';
import { endsWithoutBytes } from './read-body.js';
import { eventRequestId, flowScopedRequestId, requestIdFrom, senderEventId } from './request-id.js';
import { SenderGuard } from './sender-guard.js';

export interface IngressDeps {
  /** The flow when it exists and is started, else undefined (never tells which). */
  activeFlow(id: string): Flow | undefined;
  requests: RequestStore;
  payloadSizeLimit: number;
  /** Where multipart files and binary bodies go; without one, binary bodies stay in memory and multipart is refused (415). */
  attachments?: AttachmentStore;
  /** ATTACHMENT_SIZE_LIMIT: total bytes of files per request. */
  attachmentSizeLimit?: number;
  defaultMaxAttempts: number;
  parsers?: readonly PayloadParser[];
  /** This instance's share of every flow's rate limit, (0, 1] (distributed mode: 1 / live instances). */
  rateLimitShare?: () => number;
  /** Called once per request that was committed (metrics). */
  onAccepted?(flowId: string, commitMs: number): void;
  /** Called for every rejected credential (metrics, logs); never given the secret. */
  onAuthFailure?(flowId: string, reason: AuthFailureReason | 'ip' | 'rate', clientIp: string): void;
  /** Attachments that could not be deleted after a rejected request (the sweep takes them later). */
  onDiscardFailed?(ids: readonly string[], err: unknown): void;
  /** PUBLIC_URL: senders that sign the URL they called (Twilio) signed this + the path and query. */
  publicUrl?: () => string;
  /**
   * Store the secret of an Asana handshake as the flow's credential secret (committed before the
   * handshake is answered); rejects with a HookdError (409: changed or learned meanwhile, 503).
   * Absent: Asana handshakes are refused.
   */
  learnSecret?(flow: Flow, secret: string): Promise<void>;
  /** The flow as the store has it now, when it exists and is started (another instance may have changed it). */
  freshFlow?(id: string): Promise<Flow | undefined>;
}

interface HookParams {
  flowId: string;
  '*'?: string;
}

const EMPTY = Buffer.alloc(0);
const HOOK_PREFIX = '/hook/';
const ALLOWED_METHODS = 'HEAD, GET, POST, PUT, PATCH, OPTIONS';
const WEBHOOK_METHODS = new Set(ALLOWED_METHODS.split(', '));
const HANDSHAKE_VALUE = 'a handshake value must be one string of at most 2048 characters';

/**
 * HEAD|GET|POST|PUT|PATCH /hook/:flowId[/suffix] — Open Integration Hub semantics. The answer is
 * sent only after the request and its queue job are committed.
 */
export async function hookRoutes(app: FastifyInstance, deps: IngressDeps): Promise<void> {
  const parsers = deps.parsers ?? DEFAULT_PARSERS;
  const limits: PayloadLimits = {
    payloadSizeLimit: deps.payloadSizeLimit,
    attachmentSizeLimit: deps.attachmentSizeLimit ?? DEFAULT_ATTACHMENT_SIZE_LIMIT,
    ...(deps.attachments ? { attachments: deps.attachments } : {}),
  };
  /** Remove files of a request that is not (and will not be) committed. Never throws. */
  const discard = async (ids: readonly string[]): Promise<void> => {
    if (ids.length === 0 || deps.attachments === undefined) return;
    try {
      await deps.attachments.delete(ids);
    } catch (err) {
      deps.onDiscardFailed?.(ids, err);
    }
  };

  // Bodies are read by the handler, after the flow lookup, through the parser seam: fastify must
  // leave the stream alone. '*' also catches requests without a Content-Type.
  app.removeAllContentTypeParsers();
  const leaveBody = (_req: unknown, _payload: unknown, done: (err: null, body: undefined) => void) => done(null, undefined);
  app.addContentTypeParser('*', leaveBody);
  // The same for every type, as a pattern: fastify caches the parser a pattern found for a type,
  // never the '*' fallback, so with '*' alone it parsed the Content-Type again on every request.
  app.addContentTypeParser(/^/, leaveBody);
  deferContinueOfWebhooks(app.server);

  // Unknown and stopped flows are answered before fastify looks at the Content-Type, whose own
  // check (a malformed header: 415) would otherwise answer first for a flow that does not exist.
  app.addHook('onRequest', (request, _reply, done) => {
    const flowId = (request.params as Partial<HookParams>).flowId;
    // A method no webhook takes is a 405 for every flow, unknown ones too: nothing is revealed.
    // Answered here, before fastify looks at a body (a QUERY without Content-Type: its own 400).
    if (!WEBHOOK_METHODS.has(request.method)) return done(methodNotAllowed(request.method));
    if (flowId !== undefined && deps.activeFlow(flowId) === undefined) return done(notFound(flowId));
    done();
  });

  const guard = new SenderGuard(deps.rateLimitShare);
  const notFound = (flowId: string) => new HookdError(E.FLOW_NOT_FOUND, flowId);
  const rejected = (flow: Flow, ip: string, failure: AuthFailure) => {
    deps.onAuthFailure?.(flow.id, failure.reason, ip);
    guard.refused(flow, ip, Date.now());
    const spec = failure.status === 401 ? E.UNAUTHORIZED : E.FORBIDDEN;
    return new HookdError(spec, failure.message).withHeaders(failure.headers);
  };

  /** A verified caller's token of the flow's rate limit (429 when none is left, counted). */
  const chargeRate = (flow: Flow, ip: string): void => {
    try {
      guard.charge(flow, Date.now());
    } catch (err) {
      deps.onAuthFailure?.(flow.id, 'rate', ip);
      throw err;
    }
  };

  /**
   * What a sender that signs the request line (Twilio, HubSpot) signed: the method, and the URL it
   * called — PUBLIC_URL and the path and query exactly as received (node's raw URL); or, when a
   * proxy changed the path, the credential's `url` standing for PUBLIC_URL/hook/{flowId},
   * followed by what came after the flow id (a path suffix, the query), as received. Undefined for
   * every other scheme: nothing built on their requests.
   */
  const signedTarget = (auth: WebhookAuth | undefined, method: string, raw: string | undefined): SignedTarget | undefined => {
    if (auth?.type !== 'twilio' && auth?.type !== 'hubspot') return undefined;
    // An absolute-form request line (`POST http://host/hook/…`) is not what a provider sends: no URL, no match.
    if (raw === undefined || !raw.startsWith(HOOK_PREFIX)) return { method };
    if (auth.url === undefined) return deps.publicUrl ? { method, url: deps.publicUrl() + raw } : { method };
    // raw is /hook/<flow id as sent>[/suffix][?query]: the flow id ends at the next / or ?.
    const end = raw.slice(HOOK_PREFIX.length).search(/[/?]/);
    return { method, url: auth.url + (end < 0 ? '' : raw.slice(HOOK_PREFIX.length + end)) };
  };

  const receive = async (request: FastifyRequest<{ Params: HookParams }>, reply: FastifyReply) => {
    const receivedAt = preciseNow();
    const { flowId } = request.params;
    let flow = deps.activeFlow(flowId);
    // Unknown and stopped flows take the same path: same body, same timing.
    if (flow === undefined) throw notFound(flowId);
    // An Asana flow that has no secret here may have learned it on another instance, whose
    // handshake it was: an event to it reads the flow as the store has it now.
    if (deps.freshFlow !== undefined && awaitsAsanaSecret(flow, request.method, request.headers)) {
      flow = await deps.freshFlow(flowId);
      if (flow === undefined) throw notFound(flowId);
    }
    const { auth, cors } = flow.trigger;
    const isHead = request.method === 'HEAD';
    // HEAD gets CORS headers only once it may reveal the flow (an unknown flow has none).
    const corsHeaders = cors ? corsResponseHeaders(cors, request.headers.origin) : undefined;
    if (corsHeaders && !isHead) reply.headers(corsHeaders);
    // A protected flow's rate is charged once the credentials verified (below) — or Meta's verify
    // token, for a flow with its handshake: wrong guesses must not use up the sender's rate; HEAD
    // never is.
    const chargeLater = (auth !== undefined && auth.type !== 'none') || flow.trigger.handshake?.type === 'meta';
    try {
      guard.admit(flow, request.ip, Date.now(), !isHead && !chargeLater);
    } catch (err) {
      deps.onAuthFailure?.(flowId, (err as HookdError).statusCode === 429 ? 'rate' : 'ip', request.ip);
      throw isHead ? notFound(flowId) : err;
    }
    if (isHead) {
      // A protected flow answers HEAD like an unknown one unless the probe carries valid credentials.
      const signedUrl = signedTarget(auth, 'HEAD', request.raw.url)?.url;
      const probe = { method: 'HEAD', headers: request.headers, query: request.query as Record<string, string>, rawBody: EMPTY, body: null, now: Date.now(), ...(signedUrl !== undefined ? { url: signedUrl } : {}) };
      if (!probeMayReveal(auth, probe)) {
        // Refused like any other bad credential (counted, logged), but answered as an unknown flow.
        const verdict = verifyRequest(auth, probe);
        if (!verdict.ok) rejected(flow, request.ip, verdict);
        throw notFound(flowId);
      }
      if (corsHeaders) reply.headers(corsHeaders);
      return reply.code(200).send();
    }

    // A provider's unsigned subscription handshake (Meta, Microsoft Graph, Dropbox): answered
    // before credentials, nothing stored. Meta's verify token is its credential.
    const early = flow.trigger.handshake && handshakeBeforeCredentials(flow.trigger.handshake, request.method, request.query as Record<string, string | string[]>);
    if (early !== undefined && flow.trigger.handshake?.type === 'meta') {
      try {
        guard.admitGuess(flow, request.ip, Date.now());
      } catch (err) {
        deps.onAuthFailure?.(flowId, 'rate', request.ip);
        throw err;
      }
    }
    if (early === 'invalid') throw new HookdError(E.BAD_REQUEST, HANDSHAKE_VALUE);
    if (early === 'refused') {
      // Its own failure bucket only (not rejected(): a basic/apiKey/token flow's would be spent too).
      guard.wrongGuess(flow, request.ip, Date.now());
      deps.onAuthFailure?.(flowId, 'mismatch', request.ip);
      throw new HookdError(E.FORBIDDEN, 'hub.verify_token does not match');
    }
    if (early !== undefined) {
      if (chargeLater) chargeRate(flow, request.ip);
      return reply.code(early.status).headers(early.headers).send(early.body);
    }

    // Asana's handshake hands over the signing secret itself: learned while the flow holds none,
    // within a few minutes of its last save (trusted on first use), then echoed.
    const asana = asanaHandshake(flow, request.method, request.raw, Date.now());
    if (asana === 'invalid') throw new HookdError(E.BAD_REQUEST, `${ASANA_SECRET_HEADER} must be one value of 8 to 512 visible characters`);
    if (asana === 'held' || asana === 'closed' || (asana !== undefined && deps.learnSecret === undefined)) {
      deps.onAuthFailure?.(flowId, 'mismatch', request.ip);
      throw new HookdError(
        E.FORBIDDEN,
        asana === 'held'
          ? 'This flow holds its Asana secret already: save it without one to take a new handshake'
          : ASANA_WINDOW_CLOSED,
      );
    }
    if (asana !== undefined) {
      await deps.learnSecret!(flow, asana.secret);
      if (chargeLater) chargeRate(flow, request.ip);
      return reply.code(200).headers({ [ASANA_SECRET_HEADER]: asana.secret, 'cache-control': 'no-store' }).send();
    }

    const verifier = createBodyVerifier(auth, request.headers, signedTarget(auth, request.method, request.raw.url));
    if (verifier.early) throw rejected(flow, request.ip, verifier.early);
    // Credentials are checked as early as they can be: from headers and query before the body is
    // read (Basic, API keys, a token that cannot be in this body); a signature once the bytes are
    // read, before they are parsed. A caller without valid credentials cannot make hookd parse
    // megabytes of XML; only a token that may sit in a JSON or form body needs the parse first.
    const headersOnly = { method: request.method, headers: request.headers, query: request.query as Record<string, string | string[]>, body: null, now: Date.now() };
    if (!verifier.needsBody && !verifier.needsParsedBody) {
      const verdict = verifier.finish(headersOnly);
      if (!verdict.ok) throw rejected(flow, request.ip, verdict);
    }
    const onChunk = verifier.needsBody ? (chunk: Buffer) => verifier.update(chunk) : undefined;
    const beforeParse = verifier.needsBody
      ? () => {
          const verdict = verifier.finish({ ...headersOnly, now: Date.now() });
          if (!verdict.ok) throw rejected(flow, request.ip, verdict);
        }
      : undefined;
    const payload: ReadPayload =
      request.method === 'GET' ? { body: null, rawBody: EMPTY } : await readPayload(request, reply, parsers, limits, onChunk, beforeParse);
    // From here on the request's files exist: they are removed unless the request is committed.
    const files = attachmentIdsOf(payload);
    let keepFiles = false;
    let requestId: string;
    try {
      const { query } = headersOnly;
      const verdict = verifier.finish({ method: headersOnly.method, headers: headersOnly.headers, query, body: payload.body, now: Date.now() });
      if (!verdict.ok) throw rejected(flow, request.ip, verdict);
      if (chargeLater) chargeRate(flow, request.ip);

      // Slack's url_verification, Zoom's url_validation, Okta's verification GET: credentials like
      // their events', answered once verified, nothing stored.
      const handshake =
        flow.trigger.handshake &&
        (handshakeInHeaders(flow.trigger.handshake, request.method, request.raw) ?? handshakeInBody(flow.trigger.handshake, payload.body, auth, verdict.key));
      if (handshake === 'invalid') throw new HookdError(E.BAD_REQUEST, HANDSHAKE_VALUE);
      if (handshake !== undefined) return reply.code(handshake.status).headers(handshake.headers).send(handshake.body);

      const suffix = request.params['*'];
      // Credentials that travel in headers, query or body fields are not kept: steps, execution
      // records and logs see `[redacted]`. The raw bytes stay exact (signatures need them) unless
      // they hold a body credential field: then they are rebuilt from the redacted body, or — when
      // they went to the attachment store (a large multipart form) — not kept at all.
      const body = auth ? redactBody(auth, payload.body) : payload.body;
      let rawBody = auth ? redactRawBody(auth, request.headers['content-type'], payload.body, payload.rawBody) : payload.rawBody;
      let rawAttachment = payload.rawAttachment;
      if (rawAttachment !== undefined && holdsBodyCredential(auth, payload.body)) {
        const rawId = rawAttachment.id;
        if (!payload.attachments?.some((a) => a.id === rawId)) await discard([rawId]);
        rawAttachment = undefined;
        rawBody = EMPTY;
      }
      // payloadType (PIPEFORCE): what the flow gets as body; raw bytes and files are stored as they are.
      const payloadLike: PayloadLike = { body, rawBody };
      if (rawAttachment) payloadLike.rawAttachment = rawAttachment;
      const shaped = applyPayloadType(payloadLike, flow.trigger.payloadType);
      // A signed event id, the signature itself (dedupeBySignature) or a sender's retry token wins
      // over x-request-id (which anyone replaying the request may change).
      const eventId = senderEventId(auth, request.headers, payload.body, verdict.signature);
      const message: ReceivedMessage = {
        id: eventId !== undefined ? eventRequestId(flowId, eventId) : requestIdFrom(request.headers['x-request-id']),
        flowId,
        receivedAt,
        method: request.method,
        path: suffix ? `/${suffix}` : '',
        query: withoutVerifyToken(flow, auth ? redactQuery(auth, query) : query),
        headers: storableHeaders(auth ? redactHeaders(auth, request.headers) : request.headers, payload.decoded === true, ownSignatureHeader(auth)),
        contentType: request.headers['content-type'] ?? null,
        body: shaped.body,
        rawBody,
        clientIp: request.ip,
      };
      if (payload.attachments && payload.attachments.length > 0) message.attachments = payload.attachments;
      if (rawAttachment) message.rawAttachment = rawAttachment;
      if (payload.cloudEvent) message.cloudEvent = redactEvent(auth, payload.cloudEvent, payload.body, body);
      if (payload.cloudEvents) message.cloudEvents = payload.cloudEvents.map((e) => redactEvent(auth, e, payload.body, body));

      let outcome: AcceptOutcome;
      const acceptOptions = { maxAttempts: flow.retry?.maxAttempts ?? deps.defaultMaxAttempts, includeRequest: flow.jobMessage?.includeRequest === true, fromSender: true };
      try {
        try {
          outcome = await deps.requests.accept(message, acceptOptions);
        } catch (err) {
          if (!(isHookdError(err) && err.code === E.REQUEST_ID_CONFLICT.code)) throw err;
          // The sender's id is another flow's: this flow's own id for it (request-id.ts).
          message.id = flowScopedRequestId(flowId, message.id);
          outcome = await deps.requests.accept(message, acceptOptions);
        }
      } catch (err) {
        // A 503 does not say the commit failed (the writer may have died right after it): the
        // files stay, and the sweep removes them later if no request references them. Unless the
        // store refused before writing anything (overloaded, closed): under an overload of large
        // uploads, kept files would fill the disk for the sweep's hour.
        keepFiles = isHookdError(err) && err.statusCode === 503 && err.nothingStored !== true;
        throw err;
      }
      // A duplicate: the first delivery's request (and its own files) is what is stored.
      keepFiles = outcome.kind === 'stored';
      deps.onAccepted?.(flowId, preciseNow() - receivedAt);
      requestId = message.id;
    } finally {
      // Before answering: a sender that gets its answer finds no file of a refused request left.
      if (!keepFiles) await discard(files);
    }
    return sendFeedback(reply, flow, requestId);
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

  // Other methods: 405 for every webhook URL, whether its flow exists or not (nothing revealed).
  const notAllowed = async (request: FastifyRequest) => {
    throw methodNotAllowed(request.method);
  };
  // Every method Node parses (CONNECT aside: Node hands it to no route) reaches a route, so that a
  // WebDAV or cache-purge method is a 405 like DELETE, not a 404 saying the URL does not exist.
  for (const method of METHODS) {
    if (method !== 'CONNECT' && !app.supportedMethods.includes(method)) app.addHttpMethod(method, { hasBody: true });
  }
  const otherMethods = app.supportedMethods.filter((m) => !WEBHOOK_METHODS.has(m));
  for (const url of ['/hook/:flowId', '/hook/:flowId/*']) {
    app.route<{ Params: HookParams }>({ method: ['HEAD', 'GET', 'POST', 'PUT', 'PATCH'], url, handler: receive });
    app.route<{ Params: HookParams }>({ method: 'OPTIONS', url, handler: preflight });
    app.route({ method: otherMethods, url, handler: notAllowed });
  }
}

function methodNotAllowed(method: string): HookdError {
  return new HookdError(E.METHOD_NOT_ALLOWED, method, ALLOWED_METHODS).withHeaders({ allow: ALLOWED_METHODS });
}

/** A parsed body, and whether its content coding was removed (gzip…: see content-encoding.ts). */
type ReadPayload = ParsedPayload & { decoded?: boolean };

async function readPayload(
  request: FastifyRequest,
  reply: FastifyReply,
  parsers: readonly PayloadParser[],
  limits: PayloadLimits,
  onChunk: ((chunk: Buffer) => void) | undefined,
  beforeParse: (() => void) | undefined,
): Promise<ReadPayload> {
  const contentType = request.headers['content-type'];
  const length = request.headers['content-length'];
  // Node accepts `gzip, chunked` and hands over the still-compressed bytes: a transfer coding other
  // than chunked is not understood (RFC 9112 §6.1: 501); Content-Encoding is what senders use.
  const transfer = request.headers['transfer-encoding'];
  if (transfer !== undefined && transfer.trim().toLowerCase() !== 'chunked') {
    throw new HookdError(E.NOT_IMPLEMENTED, `Transfer-Encoding ${transfer} is not supported (only chunked; compress with Content-Encoding)`).withHeaders({ connection: 'close' });
  }
  // HTTP/1.0 frames a request body by Content-Length only: without one Node reads none, and a body
  // the sender wrote until it closed would be lost under a 200 (RFC 1945 §8.3: required on POST).
  if (length === undefined && transfer === undefined && contentType !== undefined && request.raw.httpVersion === '1.0') {
    throw new HookdError(E.LENGTH_REQUIRED, 'An HTTP/1.0 request with a body needs a Content-Length').withHeaders({ connection: 'close' });
  }
  const hasBody = transfer !== undefined || (length !== undefined && Number(length) !== 0);
  if (contentType === undefined) {
    // A bodiless POST (a ping) is fine — also chunked with no chunk at all; bytes of unknown type are not.
    if (!hasBody || (length === undefined && (await endsWithoutBytes(request.raw)))) return { body: null, rawBody: EMPTY };
    const err = new HookdError(E.UNSUPPORTED_MEDIA_TYPE, 'A request with a body needs a Content-Type header');
    // Its body is dropped as a 413's is: the sender reads the answer, and no second one follows.
    const headers = lingerAfterRefusal(request.raw);
    throw headers ? err.withHeaders(headers) : err;
  }
  const media = parseMediaType(contentType);
  // No bytes at all (Content-Length: 0) is no body, whatever type it declares: pings often say
  // JSON and send nothing. CloudEvents excepted: their parsers say what an empty event lacks.
  if (!hasBody && request.headers['ce-specversion'] === undefined && !media.type.startsWith('application/cloudevents')) {
    return { body: null, rawBody: EMPTY };
  }
  // What this type may take: PAYLOAD_SIZE_LIMIT for parsed bodies, ATTACHMENT_SIZE_LIMIT (+ the
  // form fields) for files.
  const max = maxBodyBytes(parserFor(media, parsers), limits);
  let body: DecodedBody | undefined;
  try {
    // The limits count decoded bytes; compressed bytes over the limit are refused at once too.
    if (length !== undefined && Number(length) > max) throw new HookdError(E.PAYLOAD_TOO_LARGE, max);
    body = decodedBody(request.raw, request.headers['content-encoding']);
    continueIfExpected(request.raw, reply.raw);
    // Assigned rather than spread in: each conditional spread is a runtime copy, on every request.
    const ctx: PayloadContext = { stream: body.stream, contentType, media, headers: request.headers, payloadSizeLimit: limits.payloadSizeLimit };
    if (limits.attachments) ctx.attachments = limits.attachments;
    if (limits.attachmentSizeLimit !== undefined) ctx.attachmentSizeLimit = limits.attachmentSizeLimit;
    if (onChunk) ctx.onChunk = onChunk;
    if (beforeParse) ctx.beforeParse = beforeParse;
    const parsed = await parsePayload(ctx, parsers);
    return body.decoded ? { ...parsed, decoded: true } : parsed;
  } catch (err) {
    body?.release();
    // Refused before the body ended (a limit, a malformed part, ce-* headers missing): the rest of
    // the upload is read and dropped (bounded), so that the sender can read the answer.
    if (isHookdError(err)) {
      const headers = lingerAfterRefusal(request.raw);
      if (headers) err.withHeaders(headers);
    }
    throw err;
  }
}

/** Whether a parsed body holds a credential field of this flow's auth (token's `token`). */
function holdsBodyCredential(auth: WebhookAuth | undefined, body: unknown): boolean {
  if (auth === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) return false;
  return credentialLocations(auth).bodyFields.some((f) => Object.prototype.hasOwnProperty.call(body, f));
}

/**
 * A CloudEvent without the flow's body credentials: extension attributes are top-level event
 * fields (structured mode), and binary-mode data is the parsed body (then its redacted form).
 */
function redactEvent(auth: WebhookAuth | undefined, event: CloudEvent, parsedBody: unknown, redactedBody: unknown): CloudEvent {
  if (auth === undefined || credentialLocations(auth).bodyFields.length === 0) return event;
  const out: CloudEvent = { ...event };
  if (event.extensions) out.extensions = redactBody(auth, event.extensions) as Record<string, unknown>;
  if (event.data !== undefined && event.data === parsedBody) out.data = redactedBody;
  return out;
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
  if (typeof body === 'string') {
    if (!reply.hasHeader('content-type')) reply.type('text/plain; charset=utf-8');
    return reply.send(body);
  }
  return sendJson(reply, body === undefined ? { requestId, message: 'thank you' } : body);
}

/**
 * A JSON value as the answer. fastify serialises objects only under a JSON content type and fails
 * the request otherwise (a 500 after the commit, so the sender retries a stored request): under a
 * configured other type, the JSON text is sent as it is.
 */
function sendJson(reply: FastifyReply, value: unknown) {
  const type = reply.getHeader('content-type');
  if (type !== undefined && !/json/i.test(String(type))) return reply.send(JSON.stringify(value));
  return reply.send(value);
}


/** Meta's verify token is a credential: a call that carries it outside a handshake does not store it. */
function withoutVerifyToken<Q extends Record<string, string | string[]>>(flow: Flow, query: Q): Q {
  if (flow.trigger.handshake?.type !== 'meta' || query['hub.verify_token'] === undefined) return query;
  return { ...query, 'hub.verify_token': REDACTED };
}
