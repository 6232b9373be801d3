import { isUtf8 } from 'node:buffer';
import type { AttachmentRef, CloudEvent, ReceivedMessage } from '../../core/message.js';

/**
 * A request as a job message carries it when the broker is its only record until a worker writes
 * it to the store (RABBITMQ_ACCEPT=broker): the job body's `request`. Lossless, unlike the API
 * view that `message` carries for external consumers: receivedAt keeps its fraction of a
 * millisecond (a redelivery is told from a sender's retry by it) and the raw bytes are exact.
 * hookd's own: external consumers read `message` (docs/external-consumers.md).
 */
export type CarriedRequest = Omit<ReceivedMessage, 'rawBody'> & {
  /** The body bytes: as text when they are UTF-8 (JSON escapes keep them exact), else base64. */
  raw: string;
  rawEncoding?: 'base64';
};

export function toCarried(m: ReceivedMessage): CarriedRequest {
  const { rawBody, ...rest } = m;
  const utf8 = isUtf8(rawBody);
  const c: CarriedRequest = { ...rest, raw: rawBody.toString(utf8 ? 'utf8' : 'base64') };
  if (!utf8) c.rawEncoding = 'base64';
  return c;
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The request of a job body's `request`; throws with a reason when it is not one. */
export function fromCarried(v: unknown): ReceivedMessage {
  if (!isObj(v)) throw new Error('request is not an object');
  if (!isStr(v.id) || v.id === '' || !isStr(v.flowId) || v.flowId === '') throw new Error('request id or flowId missing');
  if (typeof v.receivedAt !== 'number' || !isStr(v.method) || !isStr(v.path) || !isStr(v.raw) || !isStr(v.clientIp)) {
    throw new Error('request receivedAt, method, path, raw or clientIp missing');
  }
  if (!isObj(v.query) || !isObj(v.headers)) throw new Error('request query or headers missing');
  if (v.contentType !== null && !isStr(v.contentType)) throw new Error('request contentType is not a string');
  const m: ReceivedMessage = {
    id: v.id,
    flowId: v.flowId,
    receivedAt: v.receivedAt,
    method: v.method,
    path: v.path,
    query: v.query as ReceivedMessage['query'],
    headers: v.headers as ReceivedMessage['headers'],
    contentType: v.contentType,
    body: v.body === undefined ? null : v.body,
    rawBody: Buffer.from(v.raw, v.rawEncoding === 'base64' ? 'base64' : 'utf8'),
    clientIp: v.clientIp,
  };
  if (isObj(v.cloudEvent)) m.cloudEvent = v.cloudEvent as unknown as CloudEvent;
  if (Array.isArray(v.cloudEvents)) m.cloudEvents = v.cloudEvents as CloudEvent[];
  if (Array.isArray(v.attachments)) m.attachments = v.attachments as AttachmentRef[];
  if (isObj(v.rawAttachment)) m.rawAttachment = v.rawAttachment as unknown as AttachmentRef;
  return m;
}
