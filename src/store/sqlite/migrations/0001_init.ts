/**
 * Initial schema of the embedded backend. Times are epoch milliseconds as REAL (sub-ms precision
 * survives: a REAL is an IEEE double, like a JS number). JSON columns hold JSON text.
 */
export const version = 1;
export const name = 'init';

export const sql = `
CREATE TABLE flows (
  id  TEXT PRIMARY KEY,
  doc TEXT NOT NULL -- the normalised Flow as JSON
);

CREATE TABLE requests (
  id           TEXT PRIMARY KEY,
  flow_id      TEXT NOT NULL,
  received_at  REAL NOT NULL,
  method       TEXT NOT NULL,
  path         TEXT NOT NULL,
  query        TEXT NOT NULL,
  headers      TEXT NOT NULL,
  body         TEXT,          -- JSON of the parsed body; NULL when there was none or body_is_raw
  -- 1: the parsed body serialises to exactly raw_body (compact JSON, the common case), so it is
  -- stored once and read back as JSON.parse(raw_body).
  body_is_raw  INTEGER NOT NULL DEFAULT 0,
  raw_body     BLOB NOT NULL,
  content_type TEXT,
  client_ip    TEXT NOT NULL,
  attachments  TEXT           -- JSON array, NULL when the message had none
);
-- GET /requests?flowId=…, newest first (ids are UUIDv7 or caller-chosen; the list sorts by id).
CREATE INDEX requests_flow_id ON requests (flow_id, id);

-- The embedded queue. A job is 'ready' (claimable once run_at has passed), 'leased' to one consumer
-- until lease_until, or 'dead'. Small rows, looked up by id: WITHOUT ROWID saves the second b-tree.
CREATE TABLE jobs (
  id           TEXT PRIMARY KEY,
  flow_id      TEXT NOT NULL,
  request_id   TEXT NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('ready', 'leased', 'dead')),
  attempts     INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  run_at       REAL NOT NULL,
  enqueued_at  REAL NOT NULL,
  lease_until  REAL,
  lease_owner  TEXT,
  last_error   TEXT,
  dead_at      REAL
) WITHOUT ROWID;
-- Partial indexes: each holds only the rows of its state, so claims and sweeps never scan dead rows.
CREATE INDEX jobs_ready ON jobs (run_at) WHERE state = 'ready';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'leased';
CREATE INDEX jobs_dead ON jobs (dead_at) WHERE state = 'dead';
CREATE INDEX jobs_dead_flow ON jobs (flow_id, dead_at) WHERE state = 'dead';

CREATE TABLE executions (
  id             TEXT PRIMARY KEY,
  request_id     TEXT NOT NULL,
  flow_id        TEXT NOT NULL,
  status         TEXT NOT NULL,
  attempts       INTEGER NOT NULL,
  created_at     REAL NOT NULL,
  updated_at     REAL NOT NULL,
  finished_at    REAL,
  queue_delay_ms REAL,
  error          TEXT,
  cursor         TEXT -- JSON {nextStep, input}
);
CREATE UNIQUE INDEX executions_request_id ON executions (request_id);
CREATE INDEX executions_flow_id ON executions (flow_id, id);
CREATE INDEX executions_status ON executions (status, id);

-- One row per step record: appending is an insert, not a rewrite of a growing JSON array.
CREATE TABLE execution_steps (
  execution_id TEXT NOT NULL,
  seq          INTEGER NOT NULL,
  step_id      TEXT NOT NULL,
  type         TEXT NOT NULL,
  status       TEXT NOT NULL,
  attempt      INTEGER NOT NULL,
  started_at   REAL NOT NULL,
  finished_at  REAL NOT NULL,
  input        TEXT,
  output       TEXT,
  error        TEXT,
  PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;

-- checkWritable() upserts this single row: a real write through the writer, fsync included.
CREATE TABLE heartbeat (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  at REAL NOT NULL
);
`;
