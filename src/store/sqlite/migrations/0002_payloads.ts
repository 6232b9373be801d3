/**
 * Issue 5 (payloads): the raw body kept in the attachment store, CloudEvents, and what the
 * attachment sweep and the retention purge look up.
 */
export const version = 2;
export const name = 'payloads';

export const sql = `
ALTER TABLE requests ADD COLUMN raw_attachment TEXT; -- JSON AttachmentRef, NULL when raw_body holds the bytes
ALTER TABLE requests ADD COLUMN cloud_event    TEXT; -- JSON CloudEvent (structured or binary mode)
ALTER TABLE requests ADD COLUMN cloud_events   TEXT; -- JSON CloudEvent[] (batch mode)

-- Every attachment a stored request references (files and raw body), one row each: the sweep asks
-- "is this file referenced?" by primary key instead of scanning JSON columns.
CREATE TABLE request_attachments (
  attachment_id TEXT PRIMARY KEY,
  request_id    TEXT NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO request_attachments (attachment_id, request_id)
  SELECT json_extract(a.value, '$.id'), r.id FROM requests r, json_each(r.attachments) a
  WHERE r.attachments IS NOT NULL AND json_extract(a.value, '$.id') IS NOT NULL;

-- The retention purge takes the oldest requests first.
CREATE INDEX requests_received_at ON requests (received_at);
`;
