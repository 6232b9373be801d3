import type { ReceivedMessage } from '../../core/message.js';
import type { RequestColumns } from '../rows.js';

/**
 * The accept op's args as they cross to the writer thread: positional. They cross once per
 * accepted request, and the structured clone of an object writes and reads back every key: a tuple
 * of the same values posts and receives in about half the time (a one-off postMessage loop, 16
 * accept ops a message, on a busy machine: 1.7-2.3 → 0.7-0.9 µs to post on the main thread, 2.2-2.7 → 1.2-1.4 µs to
 * receive on the writer's). Built here; read by ops/accept-request.ts, which names them back.
 */
export type AcceptRequestArgs = [
  id: string,
  flowId: string,
  receivedAt: number,
  method: string,
  path: string,
  query: string,
  headers: string,
  body: string | null,
  bodyIsRaw: boolean,
  contentType: string | null,
  clientIp: string,
  attachments: string | null,
  rawAttachment: string | null,
  cloudEvent: string | null,
  cloudEvents: string | null,
  /** Every attachment id the request references, for request_attachments. */
  attachmentIds: string[],
  /**
   * The raw bytes; below 64 KiB as a latin1 string (one char per byte), which crosses threads far
   * cheaper than a typed array (request-store.ts). JSON columns are text, serialised on the main
   * thread, for the same reason.
   */
  rawBody: Uint8Array | string,
  maxAttempts: number,
  /**
   * Hand-off: a local consumer reserved a slot for this job, so it is inserted already leased to
   * that consumer (attempts 1) and handed to it straight after commit, without a claim round trip.
   */
  leaseOwner: string | null,
];

export function acceptRequestArgs(m: ReceivedMessage, c: RequestColumns, rawBody: Uint8Array | string, maxAttempts: number): AcceptRequestArgs {
  return [
    m.id,
    m.flowId,
    m.receivedAt,
    m.method,
    m.path,
    c.query,
    c.headers,
    c.body,
    c.bodyIsRaw,
    c.contentType,
    c.clientIp,
    c.attachments,
    c.rawAttachment,
    c.cloudEvent,
    c.cloudEvents,
    c.attachmentIds,
    rawBody,
    maxAttempts,
    null,
  ];
}

/** Set when the batch is formed (request-store.ts: a hand-off slot is reserved then). */
export function setLeaseOwner(a: AcceptRequestArgs, owner: string): void {
  a[18] = owner;
}
