/**
 * The one registry of hookd's errors: every error a client can see has a code, an HTTP status and a
 * message template here (the pattern of fastify's lib/errors.js). Throw with `new HookdError(E.X, …args)`.
 */
export interface ErrorSpec {
  readonly code: string;
  readonly status: number;
  /** `%s` placeholders are filled in order from the args given to HookdError. */
  readonly message: string;
}

function spec<const C extends string>(code: C, status: number, message: string): ErrorSpec & { code: C } {
  return { code, status, message };
}

export const E = {
  FLOW_NOT_FOUND: spec('FLOW_NOT_FOUND', 404, 'Flow %s either does not exist or is inactive.'),
  NOT_FOUND: spec('NOT_FOUND', 404, '%s not found'),
  CURSOR_GONE: spec('CURSOR_GONE', 410, '%s %s, the page cursor (before), does not exist (any more: retention deletes old ones); list again from the first page'),
  UNSUPPORTED_MEDIA_TYPE: spec('UNSUPPORTED_MEDIA_TYPE', 415, '%s'),
  INVALID_BODY: spec('INVALID_BODY', 400, 'Invalid %s body: %s'),
  PAYLOAD_TOO_LARGE: spec('PAYLOAD_TOO_LARGE', 413, 'Payload exceeds the limit of %s bytes'),
  RANGE_NOT_SATISFIABLE: spec('RANGE_NOT_SATISFIABLE', 416, 'Range %s is outside the %s bytes'),
  VALIDATION_FAILED: spec('VALIDATION_FAILED', 400, '%s'),
  BAD_REQUEST: spec('BAD_REQUEST', 400, '%s'),
  METHOD_NOT_ALLOWED: spec('METHOD_NOT_ALLOWED', 405, 'Method %s is not allowed here (allowed: %s)'),
  URI_TOO_LONG: spec('URI_TOO_LONG', 414, '%s'),
  LENGTH_REQUIRED: spec('LENGTH_REQUIRED', 411, '%s'),
  EXPECTATION_FAILED: spec('EXPECTATION_FAILED', 417, 'Expect: %s is not an expectation hookd can meet (only 100-continue)'),
  REQUEST_TIMEOUT: spec('REQUEST_TIMEOUT', 408, 'The request did not arrive whole within REQUEST_TIMEOUT'),
  HEADERS_TOO_LARGE: spec('HEADERS_TOO_LARGE', 431, 'The request headers are too large'),
  NOT_IMPLEMENTED: spec('NOT_IMPLEMENTED', 501, '%s'),
  UNAUTHORIZED: spec('UNAUTHORIZED', 401, '%s'),
  FORBIDDEN: spec('FORBIDDEN', 403, '%s'),
  CONFLICT: spec('CONFLICT', 409, '%s'),
  REQUEST_ID_CONFLICT: spec('REQUEST_ID_CONFLICT', 409, 'Request id %s is already used by another flow'),
  ATTACHMENT_GONE: spec('ATTACHMENT_GONE', 409, 'Request %s: its file %s is no longer in the attachment store'),
  ATTACHMENT_CHANGED: spec('ATTACHMENT_CHANGED', 409, 'Request %s: its file %s no longer has the bytes it was stored with'),
  IP_NOT_ALLOWED: spec('IP_NOT_ALLOWED', 403, 'Client address is not allowed'),
  RATE_LIMITED: spec('RATE_LIMITED', 429, 'Too many requests'),
  STORE_UNAVAILABLE: spec('STORE_UNAVAILABLE', 503, 'Storage is unavailable: %s'),
  QUEUE_UNAVAILABLE: spec('QUEUE_UNAVAILABLE', 503, 'Queue is unavailable: %s'),
  SHUTTING_DOWN: spec('SHUTTING_DOWN', 503, 'hookd is shutting down'),
  INTERNAL: spec('INTERNAL', 500, 'Internal error'),
} as const;

export type ErrorCode = keyof typeof E;

export class HookdError extends Error {
  readonly code: string;
  readonly statusCode: number;
  /** Seconds a client should wait before retrying (503, 429). */
  retryAfter?: number;
  details?: unknown;
  /** Extra response headers (e.g. WWW-Authenticate). */
  headers?: Record<string, string>;
  /**
   * A 503 raised before anything was written (an overloaded or closed store, a broker known to be
   * down): nothing of the request is stored. Other 503s may come after a commit whose answer was
   * lost, so what the request references (its files) must stay.
   */
  nothingStored?: true;

  constructor(spec: ErrorSpec, ...args: Array<string | number>) {
    let i = 0;
    super(spec.message.replace(/%s/g, () => String(args[i++] ?? '')));
    this.name = 'HookdError';
    this.code = spec.code;
    this.statusCode = spec.status;
  }

  withRetryAfter(seconds: number): this {
    this.retryAfter = seconds;
    return this;
  }

  withHeaders(headers: Record<string, string> | undefined): this {
    if (headers) this.headers = { ...this.headers, ...headers };
    return this;
  }

  withDetails(details: unknown): this {
    this.details = details;
    return this;
  }

  /** See `nothingStored`. */
  beforeAnyWrite(): this {
    this.nothingStored = true;
    return this;
  }

  /** The same error as a new object (one rejection may be marked without touching another's). */
  copy(): HookdError {
    const c = new HookdError({ code: this.code, status: this.statusCode, message: '%s' }, this.message);
    if (this.retryAfter !== undefined) c.retryAfter = this.retryAfter;
    if (this.details !== undefined) c.details = this.details;
    if (this.headers !== undefined) c.headers = { ...this.headers };
    if (this.nothingStored) c.nothingStored = true;
    return c;
  }
}

export function isHookdError(err: unknown): err is HookdError {
  return err instanceof HookdError;
}

/** Storage/queue failure: always a 503 with Retry-After, never a 2xx. */
export function unavailable(kind: 'store' | 'queue', cause: unknown, retryAfterSeconds = 1): HookdError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new HookdError(kind === 'store' ? E.STORE_UNAVAILABLE : E.QUEUE_UNAVAILABLE, reason).withRetryAfter(
    retryAfterSeconds,
  );
}
