import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { contentDisposition, formDataDisposition } from '../../attachments/content-disposition.js';
import { isCredentialHeader } from '../../auth/credential-headers.js';
import { HEADER_NAME_PATTERN } from '../../core/credentials.js';
import type { HttpStepDef } from '../../core/flow.js';
import type { AttachmentRef } from '../../core/message.js';
import { compileExpression, type CompiledExpression, type ExpressionIsolate, type ExpressionLimits } from '../expression.js';
import type { CompiledStep, RequestPayload, StepContext, StepOutcome } from '../step.js';
import { expressionFailure, StepFailure } from '../step-failure.js';
import { callSignal } from './call-signal.js';

/**
 * `http`: calls a URL with the step input (or the `body` expression's result over it).
 *
 * - Body: a string result is sent as is (text/plain unless the step's headers say otherwise), any
 *   other value as JSON (application/json). GET never has a body; DELETE only with a `body` expression.
 *   A body expression that matches nothing fails the step without retry (DELETE: sent without a body).
 * - Every call carries `Idempotency-Key: <requestId>:<stepId>`: the runner is at-least-once, so a
 *   call may be repeated after a crash or a lost acknowledgement and the receiver can drop repeats.
 * - 2xx → output `{status, headers, body}` (body parsed when JSON, text when textual, base64 with
 *   `bodyEncoding: 'base64'` otherwise; text in its declared charset; over maxResponseBytes cut,
 *   `bodyTruncated`, never parsed). Non-2xx (3xx included: redirects are not followed), network
 *   errors and timeouts are retryable failures; a Retry-After on any failed answer is a lower bound
 *   for the next delay (at most maxBackoffMs).
 * - `forwardAttachment` sends the request's stored bytes instead, streamed from the attachment
 *   store with their Content-Length: `raw` the body exactly as received (its Content-Type), `{field}`
 *   the first file of that multipart field (its content type, Content-Disposition with its
 *   filename), `multipart` every file as a multipart/form-data part (field and filename kept), with
 *   the `body` expression's result (an object) as text fields. A file that is gone (purged) fails
 *   the step without retry.
 */
export interface HttpStepOptions {
  /** Largest response body kept (bytes); a larger 2xx answer is cut there (bodyTruncated), the step succeeds. */
  maxResponseBytes?: number;
  limits?: ExpressionLimits;
  /** Where the body expression is evaluated (compileExpression's isolate). */
  isolate?: ExpressionIsolate;
}

export const DEFAULT_HTTP_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024;
const ERROR_BODY_SNIPPET = 500;

export interface HttpStepOutput {
  status: number;
  headers: Record<string, string>;
  body: unknown;
  bodyEncoding?: 'base64';
  /** The answer was longer than the step keeps (10 MiB): `body` holds its beginning (as text or base64, never parsed). */
  bodyTruncated?: true;
}

/** https://fetch.spec.whatwg.org/#port-blocking (Node's fetch, undici, applies it). */
const FETCH_BAD_PORTS: ReadonlySet<number> = new Set([
  0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115,
  117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587,
  601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679,
  6697, 10080,
]);

export function compileHttpStep(def: HttpStepDef, options: HttpStepOptions = {}): CompiledStep {
  const method = def.method ?? 'POST';
  const timeoutMs = def.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS;
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;

  let url: URL;
  try {
    url = new URL(def.url);
  } catch {
    throw new Error(`invalid url "${def.url}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`url must be http or https, got ${url.protocol}`);
  }
  // fetch (the Fetch standard) refuses these ports on every call: a flow that names one could never
  // run, and each attempt would fail the same way until its job is dead.
  const port = url.port === '' ? undefined : Number(url.port);
  if (port !== undefined && FETCH_BAD_PORTS.has(port)) {
    throw new Error(`url port ${port} is one that fetch refuses to call (the Fetch standard's "bad ports", e.g. 6000, 6665-6669, 10080): use another port`);
  }
  // fetch refuses such URLs on every call, and its error would quote them, secrets included.
  if (url.username !== '' || url.password !== '') {
    throw new Error('url must not contain credentials (user:password@): send them in headers, e.g. Authorization');
  }
  if (method === 'GET' && def.body !== undefined) throw new Error('a GET request cannot have a body');
  const forward = def.forwardAttachment;
  if (method === 'GET' && forward !== undefined) throw new Error('a GET request cannot forward an attachment');
  // Validates header names and values now rather than on every call.
  const baseHeaders = stepHeaders(def.headers ?? {});
  if (!baseHeaders.has('user-agent')) baseHeaders.set('user-agent', 'hookd');
  const bodyExpression: CompiledExpression | undefined =
    def.body === undefined ? undefined : compileExpression(def.body, options.limits, options.isolate);
  const sendsBody = method !== 'GET' && (method !== 'DELETE' || bodyExpression !== undefined || forward !== undefined);
  // Credentials in query strings stay out of error messages and execution records.
  const shownUrl = `${url.origin}${url.pathname}`;
  const target = `${method} ${shownUrl}`;

  return {
    def,
    pure: false,
    async run(input: unknown, ctx: StepContext): Promise<StepOutcome> {
      let payload: unknown = input;
      if (bodyExpression !== undefined) {
        try {
          payload = await bodyExpression.evaluate(input, ctx.message);
        } catch (err) {
          throw expressionFailure(err);
        }
        // No match (a misspelt field, a path into the wrong shape) would send an empty body and
        // count as delivered: said instead, as an expression error is (no retry fixes it).
        if (payload === undefined && forward === undefined && method !== 'DELETE') {
          const shown = def.body!.replace(/\s+/g, ' ').trim();
          throw new StepFailure(`the body expression \`${shown.length > 80 ? `${shown.slice(0, 79)}…` : shown}\` matched nothing in its input (JSONata's no match): nothing to send; the input is in this step's record`, { retryable: false });
        }
      }

      const headers = new Headers(baseHeaders);
      headers.set('idempotency-key', `${ctx.requestId}:${def.id}`);
      let body: string | Buffer | AsyncIterable<Buffer> | undefined;
      let missing: MissingAttachment | undefined;
      if (forward !== undefined) {
        const stored = ctx.payload;
        if (stored === undefined) throw new StepFailure('forwardAttachment: the request\'s stored bytes are not available here', { retryable: false });
        const fwd = forwarded(forward, stored, bodyExpression === undefined ? undefined : payload, (m) => (missing = m));
        body = fwd.body;
        if (forward === 'multipart' || !headers.has('content-type')) headers.set('content-type', fwd.contentType);
        if (fwd.disposition !== undefined && !headers.has('content-disposition')) headers.set('content-disposition', fwd.disposition);
        headers.set('content-length', String(fwd.length));
      } else if (sendsBody && payload !== undefined) {
        if (typeof payload === 'string') {
          body = payload;
          if (!headers.has('content-type')) headers.set('content-type', 'text/plain; charset=utf-8');
        } else {
          try {
            body = JSON.stringify(payload);
          } catch (err) {
            throw new StepFailure(`cannot serialize the request body: ${(err as Error).message}`, {
              retryable: false,
            });
          }
          if (!headers.has('content-type')) headers.set('content-type', 'application/json');
        }
      }

      // For a failed call's record: what was sent. The body only when an expression made it (else
      // it is the step's input, recorded already); a forwarded attachment's bytes are not repeated.
      const request = { method, url: shownUrl, ...(bodyExpression !== undefined && forward === undefined && sendsBody ? { body: payload } : {}) };
      const call = callSignal(timeoutMs, ctx.signal);
      const signal = call.signal;
      const describe = (err: unknown): StepFailure => {
        if (call.timedOut()) {
          return new StepFailure(`${target} timed out after ${timeoutMs} ms`, { retryable: true, output: { request } });
        }
        if (ctx.signal?.aborted) return new StepFailure(`${target} aborted: runner stopping`, { retryable: true });
        return new StepFailure(`${target} failed: ${networkReason(err)}`, { retryable: true, cause: err, output: { request } });
      };

      try {
        let res: Response;
        try {
          const streamed = body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body);
          // A streamed body (forwardAttachment) needs half-duplex; the typings lag behind undici.
          // Redirects are not followed: a 302/303 would turn the POST into a body-less GET (counted a
          // success), and the step's headers (credentials) would go to whatever host Location names.
          // A 3xx is a failed delivery, as with other webhook senders (Svix): fix the URL.
          const init = { method, headers, body, signal, redirect: 'manual', ...(streamed ? { duplex: 'half' } : {}) } as RequestInit;
          res = await fetch(url, init);
        } catch (err) {
          if (missing !== undefined) throw new StepFailure(`forwardAttachment: attachment ${missing.id} is gone (purged or deleted)`, { retryable: false });
          throw describe(err);
        }

        let read: { bytes: Buffer; truncated: boolean };
        try {
          read = await readBody(res, res.ok ? maxResponseBytes : ERROR_BODY_SNIPPET);
        } catch (err) {
          if (err instanceof StepFailure) throw err;
          throw describe(err);
        }

        if (!res.ok) {
          const snippet = decodeText(read.bytes, res.headers.get('content-type')).slice(0, ERROR_BODY_SNIPPET).trim();
          const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
          const location = res.status >= 300 && res.status < 400 ? res.headers.get('location') : null;
          const redirected = location === null ? '' : ` (a redirect to ${shownLocation(location, url)}: redirects are not followed, fix the step's url)`;
          const output = { request, status: res.status, headers: Object.fromEntries(res.headers), body: snippet === '' ? null : snippet };
          // retryClientErrors false: a 4xx that a retry cannot change is said as such and dead-lettered at once.
          const retryable = def.retryClientErrors !== false || !permanentClientError(res.status);
          throw new StepFailure(
            `${target} answered ${res.status}${res.statusText ? ` ${res.statusText}` : ''}${redirected}${snippet ? `: ${snippet}` : ''}${retryable ? '' : ' (a client error: not retried, retryClientErrors is false)'}`,
            retryAfterMs === undefined || !retryable ? { retryable, output } : { retryable, retryAfterMs, output },
          );
        }
        const output: HttpStepOutput = { status: res.status, headers: Object.fromEntries(res.headers), body: null };
        // Longer than kept: the receiver took the call (a 2xx), so the step succeeded; its answer is cut.
        decodeBody(read.bytes, res.headers.get('content-type'), output, read.truncated);
        return { status: 'completed', output };
      } finally {
        call.done();
      }
    },
  };
}

const HEADER_NAME = new RegExp(HEADER_NAME_PATTERN);

/** 4xx answers a later attempt may get past (a timeout, too early, too many requests): retried whatever retryClientErrors says. */
const TRANSIENT_CLIENT_ERRORS = new Set([408, 425, 429]);

function permanentClientError(status: number): boolean {
  return status >= 400 && status < 500 && !TRANSIENT_CLIENT_ERRORS.has(status);
}

/**
 * The step's headers as fetch takes them. An invalid one is named, with what is wrong in it; the
 * value is quoted except for a credential header (credential-headers.ts), since the message goes
 * to API answers, logs and execution records.
 */
function stepHeaders(given: Record<string, string>): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(given)) {
    if (!HEADER_NAME.test(name)) {
      throw new Error(`header ${JSON.stringify(name)}: invalid name (letters, digits and !#$%&'*+-.^_\`|~ only: no spaces or colons)`);
    }
    try {
      headers.append(name, value);
    } catch {
      if (isCredentialHeader(name)) {
        throw new Error(`header ${JSON.stringify(name)}: invalid value (not shown: a credential; no line breaks, characters up to U+00FF)`);
      }
      throw new Error(`header ${JSON.stringify(name)}: invalid value ${JSON.stringify(value)} (no line breaks; characters up to U+00FF)`);
    }
  }
  return headers;
}

interface MissingAttachment {
  id: string;
}

interface Forwarded {
  body: Buffer | AsyncIterable<Buffer>;
  contentType: string;
  length: number;
  disposition?: string;
}

/** The body of a forwardAttachment call: the request's stored bytes, streamed file by file. */
function forwarded(
  mode: NonNullable<HttpStepDef['forwardAttachment']>,
  stored: RequestPayload,
  fields: unknown,
  onMissing: (m: MissingAttachment) => void,
): Forwarded {
  const file = (ref: AttachmentRef) => fileBytes(stored, ref, onMissing);
  if (mode === 'raw') {
    if (stored.rawAttachment !== undefined) {
      return { body: file(stored.rawAttachment), contentType: stored.contentType ?? stored.rawAttachment.contentType, length: stored.rawAttachment.size };
    }
    return { body: stored.rawBody, contentType: stored.contentType ?? 'application/octet-stream', length: stored.rawBody.length };
  }
  if (mode !== 'multipart') {
    const ref = stored.attachments.find((a) => a.field === mode.field);
    if (ref === undefined) throw new StepFailure(`forwardAttachment: the request has no file in field "${mode.field}"`, { retryable: false });
    return {
      body: file(ref),
      contentType: ref.contentType,
      length: ref.size,
      ...(ref.filename !== undefined ? { disposition: contentDisposition(ref.filename) } : {}),
    };
  }
  if (fields !== undefined && (fields === null || typeof fields !== 'object' || Array.isArray(fields))) {
    throw new StepFailure('forwardAttachment multipart: the body expression must give an object (its fields)', { retryable: false });
  }
  const boundary = `----hookd${randomBytes(12).toString('hex')}`;
  const pieces: Array<Buffer | AttachmentRef> = [];
  for (const [name, value] of Object.entries((fields ?? {}) as Record<string, unknown>)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      const text = typeof v === 'string' ? v : JSON.stringify(v) ?? '';
      pieces.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${formDataDisposition(name)}\r\n\r\n${text}\r\n`));
    }
  }
  for (const ref of stored.attachments) {
    pieces.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: ${formDataDisposition(ref.field ?? 'file', ref.filename ?? ref.id)}\r\n` +
          `Content-Type: ${ref.contentType.replace(/[\r\n]/g, '')}\r\n\r\n`,
      ),
      ref,
      Buffer.from('\r\n'),
    );
  }
  pieces.push(Buffer.from(`--${boundary}--\r\n`));
  const length = pieces.reduce((n, p) => n + (Buffer.isBuffer(p) ? p.length : p.size), 0);
  async function* body(): AsyncGenerator<Buffer> {
    for (const p of pieces) {
      if (Buffer.isBuffer(p)) yield p;
      else yield* file(p);
    }
  }
  return { body: body(), contentType: `multipart/form-data; boundary=${boundary}`, length };
}

/** An attachment's bytes, opened when the upload reaches them. */
async function* fileBytes(stored: RequestPayload, ref: AttachmentRef, onMissing: (m: MissingAttachment) => void): AsyncGenerator<Buffer> {
  const opened = await stored.open(ref.id);
  if (opened === undefined) {
    onMissing({ id: ref.id });
    throw new Error(`attachment ${ref.id} is gone`);
  }
  const stream: Readable = opened.stream;
  try {
    for await (const chunk of stream) yield chunk as Buffer;
  } finally {
    stream.destroy();
  }
}

/**
 * The answer's first `limit` bytes; `truncated` when there was more (the rest is not read). For
 * error responses the limit is a snippet's size.
 */
async function readBody(res: Response, limit: number): Promise<{ bytes: Buffer; truncated: boolean }> {
  if (res.body === null) return { bytes: Buffer.alloc(0), truncated: false };
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const room = limit - size;
      if (value.byteLength > room) {
        chunks.push(Buffer.from(value.buffer, value.byteOffset, room));
        size = limit;
        truncated = true;
        break;
      }
      chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      size += value.byteLength;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return { bytes: Buffer.concat(chunks, size), truncated };
}

/** A Location for an error message: resolved against the step's url, without its query (credentials). */
function shownLocation(location: string, base: URL): string {
  try {
    const u = new URL(location, base);
    return `${u.origin}${u.pathname}`;
  } catch {
    return 'an invalid location';
  }
}

/** Text in the charset the answer declares (UTF-8 when none, or one this runtime does not know). */
function decodeText(bytes: Buffer, contentType: string | null): string {
  const charset = /;\s*charset\s*=\s*"?([\w.:-]+)"?/i.exec(contentType ?? '')?.[1];
  if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
    try {
      return new TextDecoder(charset).decode(bytes);
    } catch {
      // An unknown label: UTF-8, as without one.
    }
  }
  return bytes.toString('utf8');
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;
const TEXT_TYPE = /^(?:text\/|application\/(?:[\w.+-]+\+)?(?:xml|javascript|x-www-form-urlencoded)\b)/i;

function decodeBody(bytes: Buffer, contentType: string | null, out: HttpStepOutput, truncated = false): void {
  if (truncated) out.bodyTruncated = true;
  if (bytes.length === 0) {
    out.body = null;
    return;
  }
  const type = contentType?.trim() ?? '';
  if (JSON_TYPE.test(type)) {
    const text = decodeText(bytes, type);
    try {
      // Cut JSON does not parse (and a prefix that happens to parse is not the answer).
      out.body = truncated ? text : JSON.parse(text);
    } catch {
      out.body = text; // says JSON, is not: keep what was sent
    }
  } else if (type === '' || TEXT_TYPE.test(type)) {
    out.body = decodeText(bytes, type);
  } else {
    out.body = bytes.toString('base64');
    out.bodyEncoding = 'base64';
  }
}

function networkReason(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause as { code?: unknown; message?: unknown } | undefined;
    if (cause && typeof cause.code === 'string') {
      const detail = typeof cause.message === 'string' && cause.message !== '' ? ` (${cause.message})` : '';
      return `${cause.code}${detail}`;
    }
    if (cause && typeof cause.message === 'string') return `${err.message}: ${cause.message}`;
    return err.message;
  }
  return String(err);
}

/** Retry-After: delay-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}
