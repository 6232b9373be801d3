import type { AttachmentRef } from '../../../core/message.js';
import type { Op } from './define-op.js';

export interface PurgeRequestsArgs {
  /** Requests received before this (epoch ms) go. */
  before: number;
  /** Requests per call: the writer is shared, so a large purge is many short transactions. */
  limit: number;
}

export interface PurgeRequestsResult {
  requests: number;
  /** Attachment ids the purged requests referenced (files and raw bodies): the caller deletes the files. */
  attachmentIds: string[];
  /** A full batch was taken: call again. */
  more: boolean;
}

/**
 * Retention: delete up to `limit` of the oldest requests received before `before`, with their
 * execution, step records, dead-lettered job and attachment references. A request whose job is
 * still queued (ready or leased) is kept — its work is not done — and taken by a later purge.
 */
export const purgeRequests: Op<PurgeRequestsArgs, PurgeRequestsResult> = ({ db }) => {
  // The two partial indexes hold only queued jobs: a small set in a healthy system.
  const candidates = db.prepare(
    `SELECT id, attachments, raw_attachment FROM requests
     WHERE received_at < ?
       AND id NOT IN (SELECT request_id FROM jobs WHERE state = 'ready'
                      UNION ALL SELECT request_id FROM jobs WHERE state = 'leased')
     ORDER BY received_at LIMIT ?`,
  );
  const ids = `(SELECT value FROM json_each(?))`;
  const deleteSteps = db.prepare(
    `DELETE FROM execution_steps WHERE execution_id IN (SELECT id FROM executions WHERE request_id IN ${ids})`,
  );
  const deleteExecutions = db.prepare(`DELETE FROM executions WHERE request_id IN ${ids}`);
  const deleteDeadJobs = db.prepare(`DELETE FROM jobs WHERE state = 'dead' AND request_id IN ${ids}`);
  const deleteRefs = db.prepare(`DELETE FROM request_attachments WHERE attachment_id IN ${ids}`);
  const deleteRequests = db.prepare(`DELETE FROM requests WHERE id IN ${ids}`);
  return (a) => {
    const rows = candidates.all(a.before, a.limit) as Array<{ id: string; attachments: string | null; raw_attachment: string | null }>;
    if (rows.length === 0) return { requests: 0, attachmentIds: [], more: false };
    const attachmentIds = new Set<string>();
    for (const r of rows) {
      if (r.attachments !== null) for (const ref of JSON.parse(r.attachments) as AttachmentRef[]) attachmentIds.add(ref.id);
      if (r.raw_attachment !== null) attachmentIds.add((JSON.parse(r.raw_attachment) as AttachmentRef).id);
    }
    const requestIds = JSON.stringify(rows.map((r) => r.id));
    const fileIds = [...attachmentIds];
    deleteSteps.run(requestIds);
    deleteExecutions.run(requestIds);
    deleteDeadJobs.run(requestIds);
    if (fileIds.length > 0) deleteRefs.run(JSON.stringify(fileIds));
    const { changes } = deleteRequests.run(requestIds);
    return { requests: changes, attachmentIds: fileIds, more: rows.length === a.limit };
  };
};
