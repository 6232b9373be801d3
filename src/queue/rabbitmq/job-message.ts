import type { DeadLetter, Job } from '../../core/job.js';
import { toRequestView, type ReceivedMessage } from '../../core/message.js';
import { fromCarried, toCarried, type CarriedRequest } from './carried-request.js';

/**
 * The wire format of a job message (documented for external consumers in
 * docs/external-consumers.md). Body: the job as UTF-8 JSON; the AMQP properties and headers repeat
 * what a router or a consumer may want without parsing the body.
 */

export const JOB_TYPE = 'hookd.job';
export const DEAD_LETTER_TYPE = 'hookd.dead-letter';

export const HEADER_FLOW_ID = 'hookd-flow-id';
export const HEADER_REQUEST_ID = 'hookd-request-id';
export const HEADER_ATTEMPTS = 'hookd-attempts';
export const HEADER_MAX_ATTEMPTS = 'hookd-max-attempts';

/** A job as it travels: `runAt` is set only while a job is parked for longer than the largest delay level. */
export interface JobMessage extends Job {
  runAt?: number;
  deadAt?: number;
  /**
   * JSON text of the request as GET /api/requests/{id} returns it, sent as the body's `message` on
   * a first delivery, for consumers outside hookd. hookd's own workers read the request from the
   * store (or the message cache); decodeJob leaves it out, so retries and dead letters go without.
   */
  payload?: string;
}

export interface EncodedMessage {
  envelope: {
    messageId: string;
    type: string;
    contentType: 'application/json';
    durable: true;
    appId: 'hookd';
    headers: Record<string, string | number>;
  };
  body: Buffer;
}

export function encodeJob(job: JobMessage): EncodedMessage {
  const body: JobMessage & { request?: CarriedRequest } = {
    id: job.id,
    flowId: job.flowId,
    requestId: job.requestId,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    enqueuedAt: job.enqueuedAt,
  };
  if (job.lastError !== undefined) body.lastError = job.lastError;
  if (job.runAt !== undefined) body.runAt = job.runAt;
  if (job.deadAt !== undefined) body.deadAt = job.deadAt;
  if (job.carried !== undefined) body.request = toCarried(job.carried);
  return {
    envelope: {
      messageId: job.id,
      type: job.deadAt === undefined ? JOB_TYPE : DEAD_LETTER_TYPE,
      contentType: 'application/json',
      // deliveryMode 2: written to disk by the queue before the confirm.
      durable: true,
      appId: 'hookd',
      headers: {
        [HEADER_FLOW_ID]: job.flowId,
        [HEADER_REQUEST_ID]: job.requestId,
        [HEADER_ATTEMPTS]: job.attempts,
        [HEADER_MAX_ATTEMPTS]: job.maxAttempts,
      },
    },
    body: Buffer.from(withPayload(JSON.stringify(body), job.payload), 'utf8'),
  };
}

/** The job's JSON with `"message": <payload>` as its last property (the payload is JSON already). */
function withPayload(json: string, payload: string | undefined): string {
  return payload === undefined ? json : `${json.slice(0, -1)},"message":${payload}}`;
}

function parseBody(body: unknown): unknown {
  // rabbitmq-client parses application/json bodies itself; anything else arrives as text or bytes.
  if (Buffer.isBuffer(body)) return JSON.parse(body.toString('utf8'));
  if (typeof body === 'string') return JSON.parse(body);
  return body;
}

const isStr = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** The job in a message body; throws with a reason when the body is not a hookd job. */
export function decodeJob(body: unknown): JobMessage {
  let v: unknown;
  try {
    v = parseBody(body);
  } catch (err) {
    throw new Error(`message body is not JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null) throw new Error('message body is not a JSON object');
  const o = v as Record<string, unknown>;
  if (!isStr(o.id) || !isStr(o.flowId) || !isStr(o.requestId)) throw new Error('job id, flowId or requestId missing');
  if (!isInt(o.attempts) || o.attempts < 1 || !isInt(o.maxAttempts) || o.maxAttempts < 1) {
    throw new Error('job attempts or maxAttempts missing');
  }
  if (typeof o.enqueuedAt !== 'number') throw new Error('job enqueuedAt missing');
  const job: JobMessage = {
    id: o.id,
    flowId: o.flowId,
    requestId: o.requestId,
    attempts: o.attempts,
    maxAttempts: o.maxAttempts,
    enqueuedAt: o.enqueuedAt,
  };
  if (typeof o.lastError === 'string') job.lastError = o.lastError;
  if (typeof o.runAt === 'number') job.runAt = o.runAt;
  if (typeof o.deadAt === 'number') job.deadAt = o.deadAt;
  if (o.request !== undefined) {
    try {
      job.carried = fromCarried(o.request);
    } catch (err) {
      throw new Error(`job request: ${(err as Error).message}`);
    }
    if (job.carried.id !== job.requestId || job.carried.flowId !== job.flowId) throw new Error('job request is not the job\'s (id or flow differs)');
  }
  return job;
}

/** Just the Job fields (what a handler sees). */
export function toJob(m: JobMessage): Job {
  const job: Job = {
    id: m.id,
    flowId: m.flowId,
    requestId: m.requestId,
    attempts: m.attempts,
    maxAttempts: m.maxAttempts,
    enqueuedAt: m.enqueuedAt,
  };
  if (m.lastError !== undefined) job.lastError = m.lastError;
  if (m.carried !== undefined) job.carried = m.carried;
  return job;
}

interface XDeath {
  reason?: unknown;
  time?: unknown;
}

/**
 * A message of the dead-letter queue as a DeadLetter. Jobs hookd buried carry deadAt and lastError
 * in the body; a job the broker moved there (delivery limit) is told apart by its x-death header.
 */
export function toDeadLetter(m: JobMessage, headers: Record<string, unknown> | undefined, deliveryLimit: number): DeadLetter {
  // Listed through the API: the request it may carry is read there by its id.
  const { carried: _carried, ...job } = toJob(m);
  if (m.deadAt !== undefined) return { ...job, deadAt: m.deadAt };
  const deaths = Array.isArray(headers?.['x-death']) ? (headers['x-death'] as XDeath[]) : [];
  const death = deaths[0];
  const deadAt = typeof death?.time === 'number' ? death.time * 1000 : Date.now();
  const reason = typeof death?.reason === 'string' ? death.reason : 'unknown';
  const lastError =
    reason === 'delivery_limit'
      ? `delivered more than ${deliveryLimit} times without being settled (worker crashed or was stopped each time)`
      : `dead-lettered by the broker (${reason})`;
  return { ...job, lastError, deadAt };
}

/**
 * The request's JSON for its job message (what GET /api/requests/{id} returns), or undefined when
 * its UTF-8 encoding is longer than `limit` bytes: consumers outside hookd then read it through
 * the API.
 */
export function requestPayload(m: ReceivedMessage, limit: number): string | undefined {
  // base64 alone makes 4 bytes of 3: too long already, whatever the rest.
  if (limit <= 0 || m.rawBody.length * (4 / 3) > limit) return undefined;
  const json = JSON.stringify(toRequestView(m));
  // Characters first (a UTF-8 byte or more each): the byte count only when it could be over.
  return json.length <= limit && (json.length * 3 <= limit || Buffer.byteLength(json, 'utf8') <= limit) ? json : undefined;
}
