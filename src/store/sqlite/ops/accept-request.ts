import { newId } from '../ids.js';
import type { Op } from './define-op.js';

export interface AcceptRequestArgs {
  id: string;
  flowId: string;
  receivedAt: number;
  method: string;
  path: string;
  /** JSON text, serialised on the main thread (strings clone cheaply across threads). */
  query: string;
  headers: string;
  /** null when there is no body, or when bodyIsRaw. */
  body: string | null;
  /** The body is JSON.parse(rawBody): stored once. */
  bodyIsRaw: boolean;
  rawBody: Uint8Array;
  contentType: string | null;
  clientIp: string;
  attachments: string | null;
  /** JSON of the raw body's AttachmentRef (bytes in the attachment store), else null. */
  rawAttachment: string | null;
  cloudEvent: string | null;
  cloudEvents: string | null;
  /** Every attachment id the request references (files and raw body), for request_attachments. */
  attachmentIds: string[];
  maxAttempts: number;
  /**
   * Hand-off: a local consumer reserved a slot for this job, so it is inserted already leased to
   * that consumer (attempts 1) and handed to it straight after commit, without a claim round trip.
   */
  leaseOwner?: string;
}

export type AcceptRequestResult =
  | { kind: 'stored'; jobId: string; enqueuedAt: number; leased: boolean }
  | { kind: 'duplicate' }
  | { kind: 'conflict' };

/** Insert the request and its job in one savepoint; an existing id is left untouched. */
export const acceptRequest: Op<AcceptRequestArgs, AcceptRequestResult> = ({ db, leaseMs }) => {
  const insertRequest = db.prepare(
    `INSERT INTO requests (id, flow_id, received_at, method, path, query, headers, body, body_is_raw,
                           raw_body, content_type, client_ip, attachments, raw_attachment, cloud_event, cloud_events)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (id) DO NOTHING`,
  );
  const insertAttachment = db.prepare('INSERT OR IGNORE INTO request_attachments (attachment_id, request_id) VALUES (?, ?)');
  const flowOf = db.prepare('SELECT flow_id FROM requests WHERE id = ?').pluck();
  const insertJob = db.prepare(
    `INSERT INTO jobs (id, flow_id, request_id, state, attempts, max_attempts, run_at, enqueued_at,
                       lease_until, lease_owner)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  return (a) => {
    const { changes } = insertRequest.run(
      a.id,
      a.flowId,
      a.receivedAt,
      a.method,
      a.path,
      a.query,
      a.headers,
      a.body,
      a.bodyIsRaw ? 1 : 0,
      a.rawBody,
      a.contentType,
      a.clientIp,
      a.attachments,
      a.rawAttachment,
      a.cloudEvent,
      a.cloudEvents,
    );
    if (changes === 0) return flowOf.get(a.id) === a.flowId ? { kind: 'duplicate' } : { kind: 'conflict' };
    for (const attachmentId of a.attachmentIds) insertAttachment.run(attachmentId, a.id);
    const now = Date.now();
    const jobId = newId();
    if (a.leaseOwner !== undefined) {
      insertJob.run(jobId, a.flowId, a.id, 'leased', 1, a.maxAttempts, now, now, now + leaseMs, a.leaseOwner);
    } else {
      insertJob.run(jobId, a.flowId, a.id, 'ready', 0, a.maxAttempts, now, now, null, null);
    }
    return { kind: 'stored', jobId, enqueuedAt: now, leased: a.leaseOwner !== undefined };
  };
};
