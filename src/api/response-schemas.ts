import Type, { type TSchema } from 'typebox';
import { ExecutionRate, FlowStatus, JobMessageOptions, RetryPolicy, Step, WebhookTrigger } from '../core/flow.js';

/**
 * What the management API answers, as JSON Schema: shown in the OpenAPI document (openapi.ts), one
 * component per `$id`. Documentation only — fastify does not serialize with them, so a field added
 * to a view can never be dropped on the way out; instead the tests check every answer they get
 * against these schemas (test/helpers/documented-responses.ts), so a view and its schema cannot
 * drift apart unseen.
 */

const Time = Type.String({ format: 'date-time' });
const AnyObject = Type.Record(Type.String(), Type.Unknown());
const HeaderValues = Type.Record(Type.String(), Type.Union([Type.String(), Type.Array(Type.String())]));

/** `{items, next?}`: `next` is the `before` of the following page, absent on the last one. */
function page(item: TSchema, id: string, description: string): TSchema {
  return Type.Object({ items: Type.Array(item), next: Type.Optional(Type.String()) }, { $id: id, description, additionalProperties: false });
}

/**
 * The trigger as answers show it: the input schema, except that a masked secret (`…a1b2`) need not
 * match the format a secret is given in (Standard Webhooks' base64 keys).
 */
const MaskedTrigger = Type.Unsafe(withoutSecretPatterns(JSON.parse(JSON.stringify(WebhookTrigger)) as unknown) as object);

function withoutSecretPatterns(schema: unknown, inSecrets = false): unknown {
  if (Array.isArray(schema)) return schema.map((s) => withoutSecretPatterns(s, inSecrets));
  if (schema === null || typeof schema !== 'object') return schema;
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([k]) => !(inSecrets && k === 'pattern'))
      .map(([k, v]) => [k, withoutSecretPatterns(v, inSecrets || k === 'secrets')]),
  );
}

export const FlowView = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    status: FlowStatus,
    /** The credential's secrets masked (`…a1b2`), except in the answer that created them. */
    trigger: MaskedTrigger,
    /** The credential headers of http steps masked (`Bearer …a1b2`), except in the answer that created them. */
    steps: Type.Array(Step),
    retry: Type.Optional(RetryPolicy),
    jobMessage: Type.Optional(JobMessageOptions),
    concurrency: Type.Optional(Type.Integer({ minimum: 1, description: 'At most this many of its executions at once (for the whole cluster)' })),
    executionRate: Type.Optional(ExecutionRate),
    createdAt: Time,
    updatedAt: Time,
    /** Where senders call the flow: PUBLIC_URL + /hook/{id}. */
    webhookUrl: Type.String(),
  },
  { $id: 'Flow', description: "A flow; its credential's secrets and its http steps' credential headers masked except in the answer that created them", additionalProperties: false },
);
export const FlowPage = Type.Object({ items: Type.Array(FlowView) }, { $id: 'FlowList', additionalProperties: false });

const StepRecordView = Type.Object(
  {
    stepId: Type.String(),
    type: Type.String(),
    status: Type.Union([Type.Literal('completed'), Type.Literal('failed'), Type.Literal('filtered')]),
    attempt: Type.Integer({ minimum: 1 }),
    startedAt: Time,
    finishedAt: Time,
    durationMs: Type.Number({ minimum: 0 }),
    input: Type.Optional(Type.String({ description: 'JSON text, cut to EXECUTION_DATA_LIMIT ({"$truncated": true, …})' })),
    output: Type.Optional(Type.String({ description: 'JSON text, cut to EXECUTION_DATA_LIMIT' })),
    error: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

export const ExecutionView = Type.Object(
  {
    id: Type.String(),
    requestId: Type.String(),
    flowId: Type.String(),
    status: Type.Union([Type.Literal('running'), Type.Literal('retrying'), Type.Literal('completed'), Type.Literal('filtered'), Type.Literal('dead')]),
    attempts: Type.Integer({ minimum: 0 }),
    createdAt: Time,
    updatedAt: Time,
    finishedAt: Type.Optional(Time),
    queueDelayMs: Type.Optional(Type.Number({ description: 'Received → first step started' })),
    error: Type.Optional(Type.String()),
    steps: Type.Array(StepRecordView),
  },
  { $id: 'Execution', additionalProperties: false },
);
export const ExecutionPage = page(ExecutionView, 'ExecutionList', 'Executions, newest first');

const AttachmentRef = Type.Object(
  {
    id: Type.String(),
    field: Type.Optional(Type.String()),
    filename: Type.Optional(Type.String()),
    contentType: Type.String(),
    size: Type.Integer({ minimum: 0 }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  },
  { $id: 'Attachment', additionalProperties: false },
);

const CloudEvent = Type.Object(
  {
    specversion: Type.String(),
    id: Type.String(),
    source: Type.String(),
    type: Type.String(),
    subject: Type.Optional(Type.String()),
    time: Type.Optional(Type.String()),
    datacontenttype: Type.Optional(Type.String()),
    dataschema: Type.Optional(Type.String()),
    extensions: Type.Optional(AnyObject),
    data: Type.Optional(Type.Unknown()),
    data_base64: Type.Optional(Type.String()),
  },
  { $id: 'CloudEvent', additionalProperties: false },
);

export const RequestView = Type.Object(
  {
    id: Type.String(),
    flowId: Type.String(),
    receivedAt: Time,
    method: Type.String(),
    path: Type.String({ description: 'What followed the flow id in the URL' }),
    query: HeaderValues,
    headers: HeaderValues,
    contentType: Type.Union([Type.String(), Type.Null()]),
    body: Type.Unknown({ description: "The parsed body (as the flow's payloadType gives it)" }),
    clientIp: Type.String(),
    attachments: Type.Optional(Type.Array(AttachmentRef)),
    rawAttachment: Type.Optional(AttachmentRef),
    cloudEvent: Type.Optional(CloudEvent),
    cloudEvents: Type.Optional(Type.Array(CloudEvent)),
    rawBody: Type.String({ description: "The body's bytes as received, base64 ('' when they went to the attachment store: rawAttachment)" }),
    size: Type.Integer({ minimum: 0 }),
    executionId: Type.Optional(Type.String()),
  },
  { $id: 'Request', additionalProperties: false },
);
export const RequestPage = page(RequestView, 'RequestList', 'Stored requests, newest first');

export const QueueStatsView = Type.Object(
  { ready: Type.Integer({ minimum: 0 }), inFlight: Type.Integer({ minimum: 0 }), delayed: Type.Integer({ minimum: 0 }), dead: Type.Integer({ minimum: 0 }) },
  { $id: 'QueueStats', additionalProperties: false },
);

const DeadLetterView = Type.Object(
  {
    id: Type.String(),
    flowId: Type.String(),
    requestId: Type.String(),
    attempts: Type.Integer({ minimum: 0 }),
    maxAttempts: Type.Integer({ minimum: 1 }),
    enqueuedAt: Time,
    deadAt: Time,
    lastError: Type.Optional(Type.String()),
  },
  { $id: 'DeadLetter', additionalProperties: false },
);
export const DeadLetterPage = page(DeadLetterView, 'DeadLetterList', 'Dead letters, newest first');

export const BulkRetryView = Type.Object(
  { retried: Type.Integer({ minimum: 0 }), remaining: Type.Integer({ minimum: 0, description: 'Still dead: past the limit (call again), or their flow deleted' }) },
  { $id: 'BulkRetryResult', additionalProperties: false },
);
export const DeadLetterRequeued = Type.Object(
  { id: Type.String(), status: Type.Literal('requeued') },
  { $id: 'DeadLetterRequeued', additionalProperties: false },
);

export const ReplayAccepted = Type.Object(
  {
    requestId: Type.String({ description: 'The copy' }),
    replayOf: Type.String({ description: 'The original' }),
    flowId: Type.String(),
    status: FlowStatus,
  },
  { $id: 'ReplayAccepted', additionalProperties: false },
);

export const BulkReplayView = Type.Object(
  {
    flowId: Type.String({ description: 'The flow the copies went to' }),
    status: FlowStatus,
    until: Time,
    replayed: Type.Integer({ minimum: 0 }),
    alreadyReplayed: Type.Integer({ minimum: 0, description: 'Copied by an earlier call of this replay (same until): not copied again' }),
    leftOutReplays: Type.Integer({ minimum: 0, description: 'Copies made by earlier replays, left out (includeReplays takes them)' }),
    requests: Type.Array(Type.Object({ requestId: Type.String(), replayOf: Type.String() }, { additionalProperties: false })),
    skipped: Type.Array(Type.Object({ requestId: Type.String(), code: Type.String(), reason: Type.String() }, { additionalProperties: false })),
    next: Type.Optional(Type.String({ description: "The next call's `after` (with this answer's `until`); absent on the last page" })),
  },
  { $id: 'BulkReplayResult', additionalProperties: false },
);

export const OpenApiDocument = Type.Object({ openapi: Type.Literal('3.1.0'), info: AnyObject, paths: AnyObject }, { $id: 'OpenApiDocument' });
