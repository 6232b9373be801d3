/**
 * Payloads (issue 5): the raw body kept in the attachment store, CloudEvents, and what the
 * attachment sweep and the retention purge look up. Same content as SQLite's 0002.
 */
export const version = 2;
export const name = 'payloads';

export const sql = `
ALTER TABLE requests ADD COLUMN raw_attachment text; -- JSON AttachmentRef, NULL when raw_body holds the bytes
ALTER TABLE requests ADD COLUMN cloud_event    text; -- JSON CloudEvent (structured or binary mode)
ALTER TABLE requests ADD COLUMN cloud_events   text; -- JSON CloudEvent[] (batch mode)

-- Every attachment a stored request references (files and raw body), one row each: the sweep asks
-- "is this file referenced?" by primary key instead of scanning JSON columns.
CREATE TABLE request_attachments (
  attachment_id text COLLATE "C" PRIMARY KEY,
  request_id    text COLLATE "C" NOT NULL
);
INSERT INTO request_attachments (attachment_id, request_id)
  SELECT a.value ->> 'id', r.id FROM requests r, json_array_elements(r.attachments::json) a
  WHERE r.attachments IS NOT NULL AND a.value ->> 'id' IS NOT NULL
  ON CONFLICT (attachment_id) DO NOTHING;

-- The retention purge takes the oldest requests first, and skips requests whose job is still
-- queued or not yet published: those lookups go by request id.
CREATE INDEX requests_received_at ON requests (received_at);
CREATE INDEX jobs_request_id ON jobs (request_id);
CREATE INDEX outbox_request_id ON outbox (request_id);
`;
