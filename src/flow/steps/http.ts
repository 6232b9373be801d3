import type { HttpStepDef } from '../../core/flow.js';
import { compileExpression, type CompiledExpression, type ExpressionLimits } from '../expression.js';
import type { CompiledStep, StepContext, StepOutcome } from '../step.js';
import { expressionFailure, StepFailure } from '../step-failure.js';

/**
 * `http`: calls a URL with the step input (or the `body` expression's result over it).
 *
 * - Body: a string result is sent as is (text/plain unless the step's headers say otherwise), any
 *   other value as JSON (application/json). GET never has a body; DELETE only with a `body` expression.
 * - Every call carries `Idempotency-Key: <requestId>:<stepId>`: the runner is at-least-once, so a
 *   call may be repeated after a crash or a lost acknowledgement and the receiver can drop repeats.
 * - 2xx → output `{status, headers, body}` (body parsed when JSON, text when textual, base64 with
 *   `bodyEncoding: 'base64'` otherwise). Non-2xx, network errors and timeouts are retryable
 *   failures; Retry-After (429/503) is honoured as a lower bound for the next delay.
 */
export interface HttpStepOptions {
  /** Largest response body read (bytes); larger responses fail the step. */
  maxResponseBytes?: number;
  limits?: ExpressionLimits;
}

export const DEFAULT_HTTP_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024;
const ERROR_BODY_SNIPPET = 500;

export interface HttpStepOutput {
  status: number;
  headers: Record<string, string>;
  body: unknown;
  bodyEncoding?: 'base64';
}

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
  if (method === 'GET' && def.body !== undefined) throw new Error('a GET request cannot have a body');
  // Validates header names and values now rather than on every call.
  const baseHeaders = new Headers(def.headers ?? {});
  if (!baseHeaders.has('user-agent')) baseHeaders.set('user-agent', 'hookd');
  const bodyExpression: CompiledExpression | undefined =
    def.body === undefined ? undefined : compileExpression(def.body, options.limits);
  const sendsBody = method !== 'GET' && (method !== 'DELETE' || bodyExpression !== undefined);
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
          payload = await bodyExpression.evaluate(input);
        } catch (err) {
          throw expressionFailure(err);
        }
      }

      const headers = new Headers(baseHeaders);
      headers.set('idempotency-key', `${ctx.requestId}:${def.id}`);
      let body: string | undefined;
      if (sendsBody && payload !== undefined) {
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

      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = ctx.signal ? AbortSignal.any([timeout, ctx.signal]) : timeout;
      const describe = (err: unknown): StepFailure => {
        if (timeout.aborted) {
          return new StepFailure(`${target} timed out after ${timeoutMs} ms`, { retryable: true });
        }
        if (ctx.signal?.aborted) return new StepFailure(`${target} aborted: runner stopping`, { retryable: true });
        return new StepFailure(`${target} failed: ${networkReason(err)}`, { retryable: true, cause: err });
      };

      let res: Response;
      try {
        res = await fetch(url, { method, headers, body, signal });
      } catch (err) {
        throw describe(err);
      }

      let bytes: Buffer;
      try {
        bytes = await readBody(res, res.ok ? maxResponseBytes : ERROR_BODY_SNIPPET);
      } catch (err) {
        if (err instanceof StepFailure) throw err;
        throw describe(err);
      }

      if (!res.ok) {
        const snippet = bytes.toString('utf8').slice(0, ERROR_BODY_SNIPPET).trim();
        const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
        throw new StepFailure(
          `${target} answered ${res.status}${res.statusText ? ` ${res.statusText}` : ''}${snippet ? `: ${snippet}` : ''}`,
          retryAfterMs === undefined ? { retryable: true } : { retryable: true, retryAfterMs },
        );
      }
      const output: HttpStepOutput = { status: res.status, headers: Object.fromEntries(res.headers), body: null };
      decodeBody(bytes, res.headers.get('content-type'), output);
      return { status: 'completed', output };
    },
  };
}

/**
 * Reads at most `limit` bytes. For error responses the limit is a snippet size and the rest is
 * dropped; for 2xx a larger body fails the step (non-retryable: the response will not shrink).
 */
async function readBody(res: Response, limit: number): Promise<Buffer> {
  if (res.body === null) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const room = limit - size;
      if (value.byteLength > room) {
        if (res.ok) {
          throw new StepFailure(`response body exceeds the limit of ${limit} bytes`, { retryable: false });
        }
        chunks.push(Buffer.from(value.buffer, value.byteOffset, room));
        size = limit;
        break;
      }
      chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      size += value.byteLength;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks, size);
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;
const TEXT_TYPE = /^(?:text\/|application\/(?:[\w.+-]+\+)?(?:xml|javascript|x-www-form-urlencoded)\b)/i;

function decodeBody(bytes: Buffer, contentType: string | null, out: HttpStepOutput): void {
  if (bytes.length === 0) {
    out.body = null;
    return;
  }
  const type = contentType?.trim() ?? '';
  if (JSON_TYPE.test(type)) {
    const text = bytes.toString('utf8');
    try {
      out.body = JSON.parse(text);
    } catch {
      out.body = text; // says JSON, is not: keep what was sent
    }
  } else if (type === '' || TEXT_TYPE.test(type)) {
    out.body = bytes.toString('utf8');
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
