import Type, { type Static } from 'typebox';
import { authTriggerFields } from './credentials.js';
import { namedPattern } from './schema-errors.js';

/**
 * Ids that are safe in URLs, file names, AMQP routing keys and log lines. Not `.` or `..`: URL
 * clients remove such path segments (RFC 3986 §5.2.4), so `/hook/..` could never be called.
 */
const IdPattern = '^(?!\\.{1,2}$)[A-Za-z0-9._-]{1,128}$';
/** IdPattern compiled: flow ids, request ids (a sender's x-request-id included), ids in API paths. */
export const ID_RE = new RegExp(IdPattern);
export const Id = Type.String({ pattern: namedPattern(IdPattern, 'must be 1 to 128 characters of A-Z a-z 0-9 . _ - (and not . or ..)') });

const StepBase = {
  /** Stable id: used in execution records, idempotency keys and resumption. Defaults to `step-<n>`. */
  id: Type.Optional(Id),
  name: Type.Optional(Type.String({ maxLength: 200 })),
};

export const TransformStep = Type.Object(
  { ...StepBase, type: Type.Literal('transform'), expression: Type.String({ minLength: 1 }) },
  { additionalProperties: false },
);
export const FilterStep = Type.Object(
  { ...StepBase, type: Type.Literal('filter'), expression: Type.String({ minLength: 1 }) },
  { additionalProperties: false },
);
export const HttpStep = Type.Object(
  {
    ...StepBase,
    type: Type.Literal('http'),
    url: Type.String({ minLength: 1 }),
    method: Type.Optional(
      Type.Union([
        Type.Literal('GET'),
        Type.Literal('POST'),
        Type.Literal('PUT'),
        Type.Literal('PATCH'),
        Type.Literal('DELETE'),
      ]),
    ),
    headers: Type.Optional(Type.Record(Type.String(), Type.String())),
    /** JSONata expression evaluated over the step input; its result is the request body. Default: the input. */
    body: Type.Optional(Type.String({ minLength: 1 })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 300_000 })),
    /**
     * false: an answer 4xx that no retry can change (400, 401, 403, 404, 422…) fails the step at
     * once, a dead letter without the retries; 408, 425 and 429 are still retried. Default true:
     * every non-2xx answer is retried, as are network errors and timeouts.
     */
    retryClientErrors: Type.Optional(Type.Boolean()),
    /**
     * Send the request's stored bytes instead of a JSON body: `raw` — the body exactly as received,
     * with its Content-Type; `{field}` — the first attachment of that multipart field, with its
     * content type; `multipart` — every attachment as a multipart/form-data file part (the `body`
     * expression's result, an object, gives the text fields).
     */
    forwardAttachment: Type.Optional(
      Type.Union([
        Type.Literal('raw'),
        Type.Literal('multipart'),
        Type.Object({ field: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
      ]),
    ),
  },
  { additionalProperties: false },
);
export const LogStep = Type.Object(
  {
    ...StepBase,
    type: Type.Literal('log'),
    level: Type.Optional(
      Type.Union([Type.Literal('debug'), Type.Literal('info'), Type.Literal('warn'), Type.Literal('error')]),
    ),
    message: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

export const Step = Type.Union([TransformStep, FilterStep, HttpStep, LogStep]);

/** "Pre-configured feedback": what the sender gets back once its request is committed. */
export const WebhookResponse = Type.Object(
  {
    status: Type.Optional(Type.Integer({ minimum: 200, maximum: 299 })),
    headers: Type.Optional(Type.Record(Type.String(), Type.String())),
    body: Type.Optional(Type.Unknown()),
  },
  { additionalProperties: false },
);

/**
 * What the flow gets as `body` (PIPEFORCE's option; docs/payloads.md): `raw` the parsed body
 * (default), `base64` {origin: <the exact bytes, base64>}, `ignore` null. The raw bytes and
 * attachments are stored in every case.
 */
export const PayloadTypeSchema = Type.Union([Type.Literal('raw'), Type.Literal('base64'), Type.Literal('ignore')]);

/**
 * A provider's subscription handshake, answered by hookd itself (ingress/handshake.ts): the
 * provider checks that the URL is its subscriber's before it sends events, by having a value it
 * sent echoed back. Answered without storing anything or running the flow.
 */
export const Handshake = Type.Union([
  /** Slack Events API: a signed POST `{"type": "url_verification", "challenge"}` → the challenge. */
  Type.Object({ type: Type.Literal('slack') }, { additionalProperties: false }),
  /** Meta (Facebook, Instagram, WhatsApp): `GET ?hub.mode=subscribe&hub.challenge&hub.verify_token` → the challenge, when the token is this one. */
  Type.Object({ type: Type.Literal('meta'), verifyToken: Type.String({ minLength: 1, maxLength: 512 }) }, { additionalProperties: false }),
  /** Microsoft Graph change notifications: `POST ?validationToken=…` → the token, as text/plain. */
  Type.Object({ type: Type.Literal('microsoft-graph') }, { additionalProperties: false }),
  /** Dropbox: `GET ?challenge=…` → the challenge, as text/plain with `X-Content-Type-Options: nosniff`. */
  Type.Object({ type: Type.Literal('dropbox') }, { additionalProperties: false }),
  /** Zoom: a signed POST `{"event": "endpoint.url_validation", "payload": {"plainToken"}}` → the token and its HMAC under the flow's secret. */
  Type.Object({ type: Type.Literal('zoom') }, { additionalProperties: false }),
  /** Okta event hooks: a `GET` with `X-Okta-Verification-Challenge` (and the hook's Authorization header) → `{"verification": …}`, once credentials verified. */
  Type.Object({ type: Type.Literal('okta') }, { additionalProperties: false }),
]);

export const WebhookTrigger = Type.Object(
  {
    type: Type.Literal('webhook'),
    response: Type.Optional(WebhookResponse),
    handshake: Type.Optional(Handshake),
    payloadType: Type.Optional(PayloadTypeSchema),
    /** Credentials (none, basic, apiKey, token, hmac, provider presets), IP allowlist, rate limit, CORS. */
    ...authTriggerFields,
  },
  { additionalProperties: false },
);

export const RetryPolicy = Type.Object(
  {
    /** Deliveries before the message goes to the dead letters (default MAX_ATTEMPTS). */
    maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    /** First retry delay; doubles per attempt, with jitter, up to maxBackoffMs. */
    backoffMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400_000 })),
    maxBackoffMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400_000 })),
  },
  { additionalProperties: false },
);

/**
 * Distributed mode, for components outside hookd that consume this flow's job messages
 * (docs/external-consumers.md): `includeRequest` puts the request itself in the first delivery,
 * up to RABBITMQ_JOB_PAYLOAD. Off by default: it costs every request of the flow CPU.
 */
export const JobMessageOptions = Type.Object(
  { includeRequest: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);

/**
 * At most `perSecond` executions (attempts: a retry is one) of the flow start per second, in
 * bursts of at most `burst` (default 1): a receiver that takes only so many calls per second.
 */
export const ExecutionRate = Type.Object(
  {
    perSecond: Type.Number({ minimum: 0.01, maximum: 100_000 }),
    burst: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
  },
  { additionalProperties: false },
);

export const FlowStatus = Type.Union([Type.Literal('started'), Type.Literal('stopped')]);

/** What a user writes (API body, YAML/JSON file). */
export const FlowInput = Type.Object(
  {
    id: Type.Optional(Id),
    name: Type.Optional(Type.String({ maxLength: 200 })),
    status: Type.Optional(FlowStatus),
    trigger: Type.Optional(WebhookTrigger),
    steps: Type.Optional(Type.Array(Step, { maxItems: 100 })),
    retry: Type.Optional(RetryPolicy),
    jobMessage: Type.Optional(JobMessageOptions),
    /**
     * At most this many of the flow's executions at once (a receiver that takes one call at a
     * time, an API's concurrency limit). Absent: as many as the workers take. Per process: on
     * SQLite that is every execution; with several instances each holds to it (docs/flows.md).
     */
    concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    /** At most so many executions started per second (docs/flows.md#execution-rate). */
    executionRate: Type.Optional(ExecutionRate),
  },
  { additionalProperties: false },
);

export type StepDef = Static<typeof Step> & { id: string };
export type TransformStepDef = Static<typeof TransformStep> & { id: string };
export type FilterStepDef = Static<typeof FilterStep> & { id: string };
export type HttpStepDef = Static<typeof HttpStep> & { id: string };
export type LogStepDef = Static<typeof LogStep> & { id: string };
export type WebhookResponseDef = Static<typeof WebhookResponse>;
export type WebhookTriggerDef = Static<typeof WebhookTrigger>;
export type HandshakeDef = Static<typeof Handshake>;
export type RetryPolicyDef = Static<typeof RetryPolicy>;
export type JobMessageOptionsDef = Static<typeof JobMessageOptions>;
export type ExecutionRateDef = Static<typeof ExecutionRate>;
export type FlowInputDef = Static<typeof FlowInput>;
export type FlowStatusDef = Static<typeof FlowStatus>;

/** A stored flow: defaults applied, every step has an id. */
export interface Flow {
  id: string;
  name: string;
  status: FlowStatusDef;
  trigger: WebhookTriggerDef;
  steps: StepDef[];
  retry?: RetryPolicyDef;
  jobMessage?: JobMessageOptionsDef;
  concurrency?: number;
  executionRate?: ExecutionRateDef;
  createdAt: string;
  updatedAt: string;
}

/**
 * A changed flow's updatedAt: now, but always later than the one it replaces (two writes within a
 * millisecond, or a clock set back). Stores compare it to detect a write in between (put's
 * `expect`): a replacement carrying the same value would look like no change at all.
 */
export function nextUpdatedAt(existing: Pick<Flow, 'updatedAt'> | undefined, now = new Date()): string {
  const before = existing === undefined ? Number.NaN : Date.parse(existing.updatedAt);
  return new Date(before >= now.getTime() ? before + 1 : now.getTime()).toISOString();
}

/** Apply defaults to a validated input. Step ids default to `step-<n>` (1-based). */
export function normalizeFlow(input: FlowInputDef, id: string, now: Date, existing?: Flow): Flow {
  const steps = (input.steps ?? []).map((s, i) => ({ ...s, id: s.id ?? `step-${i + 1}` }) as StepDef);
  const flow: Flow = {
    id,
    name: input.name ?? existing?.name ?? id,
    // Replacing a definition without a status keeps the flow's current one: editing a stopped
    // flow's steps must not make its webhook live again.
    status: input.status ?? existing?.status ?? 'started',
    trigger: input.trigger ?? { type: 'webhook' },
    steps,
    createdAt: existing?.createdAt ?? now.toISOString(),
    updatedAt: nextUpdatedAt(existing, now),
  };
  if (input.retry) flow.retry = input.retry;
  if (input.jobMessage) flow.jobMessage = input.jobMessage;
  if (input.concurrency !== undefined) flow.concurrency = input.concurrency;
  if (input.executionRate !== undefined) flow.executionRate = input.executionRate;
  return flow;
}

/** Duplicate step ids would make resumption and idempotency keys ambiguous. */
export function duplicateStepId(flow: Flow): string | undefined {
  const seen = new Set<string>();
  for (const s of flow.steps) {
    if (seen.has(s.id)) return s.id;
    seen.add(s.id);
  }
  return undefined;
}
