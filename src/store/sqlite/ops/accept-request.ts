import { newId } from '../ids.js';
import type { RequestColumns } from '../../rows.js';
import type { Op } from './define-op.js';

export interface AcceptRequestArgs extends RequestColumns {
  id: string;
  flowId: string;
  receivedAt: number;
  method: string;
  path: string;
  /**
   * The raw bytes; below 64 KiB as a latin1 string (one char per byte), which crosses threads far
   * cheaper than a typed array (request-store.ts). JSON columns are text, serialised on the main
   * thread, for the same reason.
   */
  rawBody: Uint8Array | string;
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
      typeof a.rawBody === 'string' ? Buffer.from(a.rawBody, 'latin1') : a.rawBody,
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
