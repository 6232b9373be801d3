import { newId } from '../ids.js';
import type { AcceptRequestArgs } from '../accept-args.js';
import type { Op } from './define-op.js';

export type { AcceptRequestArgs };

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
    const [id, flowId, receivedAt, method, path, query, headers, body, bodyIsRaw, contentType, clientIp, attachments, rawAttachment, cloudEvent, cloudEvents, attachmentIds, rawBody, maxAttempts, leaseOwner] = a;
    const { changes } = insertRequest.run(
      id,
      flowId,
      receivedAt,
      method,
      path,
      query,
      headers,
      body,
      bodyIsRaw ? 1 : 0,
      typeof rawBody === 'string' ? Buffer.from(rawBody, 'latin1') : rawBody,
      contentType,
      clientIp,
      attachments,
      rawAttachment,
      cloudEvent,
      cloudEvents,
    );
    if (changes === 0) return flowOf.get(id) === flowId ? { kind: 'duplicate' } : { kind: 'conflict' };
    for (const attachmentId of attachmentIds) insertAttachment.run(attachmentId, id);
    const now = Date.now();
    const jobId = newId();
    if (leaseOwner !== null) {
      insertJob.run(jobId, flowId, id, 'leased', 1, maxAttempts, now, now, now + leaseMs, leaseOwner);
    } else {
      insertJob.run(jobId, flowId, id, 'ready', 0, maxAttempts, now, now, null, null);
    }
    return { kind: 'stored', jobId, enqueuedAt: now, leased: leaseOwner !== null };
  };
};
