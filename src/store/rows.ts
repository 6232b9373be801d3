import { E, HookdError } from '../core/errors.js';
import type { Execution, ExecutionStatus, StepRecord, StepStatus } from '../core/execution.js';
import type { DeadLetter, Job } from '../core/job.js';
import { attachmentIdsOf, type AttachmentRef, type CloudEvent, type ReceivedMessage } from '../core/message.js';

/**
 * Row shapes shared by the SQL stores (SQLite and PostgreSQL have the same columns) and their
 * mapping to domain objects; what differs per database stays in postgres/rows.ts.
 */

export interface RequestRow {
  id: string;
  flow_id: string;
  received_at: number;
  method: string;
  path: string;
  query: string;
  headers: string;
  body: string | null;
  /** 0/1 in SQLite, boolean in PostgreSQL. */
  body_is_raw: number | boolean;
  raw_body: Buffer;
  content_type: string | null;
  client_ip: string;
  attachments: string | null;
  raw_attachment: string | null;
  cloud_event: string | null;
  cloud_events: string | null;
}

export function toMessage(r: RequestRow): ReceivedMessage {
  const m: ReceivedMessage = {
    id: r.id,
    flowId: r.flow_id,
    receivedAt: r.received_at,
    method: r.method,
    path: r.path,
    query: JSON.parse(r.query) as ReceivedMessage['query'],
    headers: JSON.parse(r.headers) as ReceivedMessage['headers'],
    contentType: r.content_type,
    body: r.body_is_raw ? (JSON.parse(r.raw_body.toString('utf8')) as unknown) : r.body === null ? null : (JSON.parse(r.body) as unknown),
    rawBody: r.raw_body,
    clientIp: r.client_ip,
  };
  if (r.attachments !== null) m.attachments = JSON.parse(r.attachments) as AttachmentRef[];
  if (r.raw_attachment !== null) m.rawAttachment = JSON.parse(r.raw_attachment) as AttachmentRef;
  if (r.cloud_event !== null) m.cloudEvent = JSON.parse(r.cloud_event) as CloudEvent;
  if (r.cloud_events !== null) m.cloudEvents = JSON.parse(r.cloud_events) as CloudEvent[];
  return m;
}

export interface ExecutionRow {
  id: string;
  request_id: string;
  flow_id: string;
  status: string;
  attempts: number;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
  queue_delay_ms: number | null;
  error: string | null;
  cursor: string | null;
}

export interface StepRow {
  execution_id: string;
  seq: number;
  step_id: string;
  type: string;
  status: string;
  attempt: number;
  started_at: number;
  finished_at: number;
  input: string | null;
  output: string | null;
  error: string | null;
}

export function toStepRecord(r: StepRow): StepRecord {
  const s: StepRecord = {
    stepId: r.step_id,
    type: r.type,
    status: r.status as StepStatus,
    attempt: r.attempt,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
  };
  if (r.input !== null) s.input = r.input;
  if (r.output !== null) s.output = r.output;
  if (r.error !== null) s.error = r.error;
  return s;
}

export function toExecution(r: ExecutionRow, steps: readonly StepRow[]): Execution {
  const e: Execution = {
    id: r.id,
    requestId: r.request_id,
    flowId: r.flow_id,
    status: r.status as ExecutionStatus,
    attempts: r.attempts,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    steps: steps.map(toStepRecord),
  };
  if (r.finished_at !== null) e.finishedAt = r.finished_at;
  if (r.queue_delay_ms !== null) e.queueDelayMs = r.queue_delay_ms;
  if (r.error !== null) e.error = r.error;
  if (r.cursor !== null) e.cursor = JSON.parse(r.cursor) as Execution['cursor'];
  return e;
}

/** Columns of a job as claim and dead-letter queries return them. */
export interface JobRow {
  id: string;
  flow_id: string;
  request_id: string;
  attempts: number;
  max_attempts: number;
  enqueued_at: number;
  last_error: string | null;
  dead_at?: number | null;
}

export function toJob(r: JobRow): Job {
  const j: Job = {
    id: r.id,
    flowId: r.flow_id,
    requestId: r.request_id,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    enqueuedAt: r.enqueued_at,
  };
  if (r.last_error !== null) j.lastError = r.last_error;
  return j;
}

export function toDeadLetter(r: JobRow): DeadLetter {
  return { ...toJob(r), deadAt: r.dead_at ?? 0 };
}

/**
 * The JSON text of the parsed body, unless it is byte for byte the raw body (compact JSON senders):
 * then the body is stored once, as raw_body, and parsed from it on read — the same value, since
 * what is stored either way is JSON.stringify(body).
 */
export function bodyColumns(body: unknown, raw: Buffer): { body: string | null; bodyIsRaw: boolean } {
  if (body === null || body === undefined) return { body: null, bodyIsRaw: false };
  let json: string;
  try {
    json = JSON.stringify(body);
  } catch (err) {
    // Valid JSON nested thousands deep parses, but does not serialise (the stack runs out).
    if (err instanceof RangeError) throw new HookdError(E.INVALID_BODY, 'JSON', 'nested too deeply to store');
    throw err;
  }
  // A UTF-8 encoding has at least one byte per UTF-16 unit: cheap length test before decoding.
  if (raw.length >= json.length && raw.length <= json.length * 3 && raw.toString('utf8') === json) {
    return { body: null, bodyIsRaw: true };
  }
  return { body: json, bodyIsRaw: false };
}

/** The columns of a request row that both backends compute alike (JSON text; the body stored once when it can be). */
export interface RequestColumns {
  query: string;
  headers: string;
  body: string | null;
  bodyIsRaw: boolean;
  contentType: string | null;
  clientIp: string;
  attachments: string | null;
  rawAttachment: string | null;
  cloudEvent: string | null;
  cloudEvents: string | null;
  /** Every attachment id the request references (files and raw body), for request_attachments. */
  attachmentIds: string[];
}

export function requestColumns(m: ReceivedMessage): RequestColumns {
  const { body, bodyIsRaw } = bodyColumns(m.body, m.rawBody);
  return {
    query: JSON.stringify(m.query),
    headers: JSON.stringify(m.headers),
    body,
    bodyIsRaw,
    contentType: m.contentType,
    clientIp: m.clientIp,
    attachments: m.attachments === undefined ? null : JSON.stringify(m.attachments),
    rawAttachment: m.rawAttachment === undefined ? null : JSON.stringify(m.rawAttachment),
    cloudEvent: m.cloudEvent === undefined ? null : JSON.stringify(m.cloudEvent),
    cloudEvents: m.cloudEvents === undefined ? null : JSON.stringify(m.cloudEvents),
    attachmentIds: attachmentIdsOf(m),
  };
}

/** Error texts can be long (stack traces); stored rows keep a bounded prefix. */
export function clip(text: string, max = 8_192): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
