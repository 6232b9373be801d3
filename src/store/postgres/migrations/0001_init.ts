/**
 * Initial schema of the PostgreSQL backend. Runs with search_path set to the target schema (see
 * migrate.ts), so names here are unqualified.
 *
 * - Ids are `text COLLATE "C"`: ids are UUIDv7 or caller-chosen (x-request-id), and keyset pagination
 *   ("newest first", `id < $before`) needs byte order, as SQLite's BINARY gives. A linguistic
 *   collation (en_US.UTF-8…) ignores '-' at the first level and would interleave ids.
 * - Times are epoch milliseconds as double precision: sub-ms precision survives (an IEEE double,
 *   like a JS number; PostgreSQL ≥ 12 prints floats shortest-exact).
 * - JSON columns are `text`, not jsonb: jsonb reorders keys, rejects "\u0000" and would be parsed
 *   and re-printed; the store keeps exactly what JSON.stringify produced.
 * - raw_body is bytea: the bytes exactly as received.
 */
export const version = 1;
export const name = 'init';

export const sql = `
CREATE TABLE flows (
  id  text COLLATE "C" PRIMARY KEY,
  doc text NOT NULL -- the normalised Flow as JSON
);

CREATE TABLE requests (
  id           text COLLATE "C" PRIMARY KEY,
  flow_id      text COLLATE "C" NOT NULL,
  received_at  double precision NOT NULL,
  method       text NOT NULL,
  -- JSON string: a decoded path may hold U+0000 (/hook/f/%00), which a text column refuses.
  path         text NOT NULL,
  query        text NOT NULL,
  headers      text NOT NULL,
  body         text,          -- JSON of the parsed body; NULL when there was none or body_is_raw
  -- true: the parsed body serialises to exactly raw_body (compact JSON, the common case), so it is
  -- stored once and read back as JSON.parse(raw_body).
  body_is_raw  boolean NOT NULL DEFAULT false,
  raw_body     bytea NOT NULL,
  content_type text,
  client_ip    text NOT NULL,
  attachments  text           -- JSON array, NULL when the message had none
);
-- GET /requests?flowId=…, newest first.
CREATE INDEX requests_flow_id ON requests (flow_id, id);

-- The PostgreSQL queue (pg-queue.ts: PostgreSQL without RabbitMQ). A job is 'ready' (claimable once
-- run_at has passed), 'leased' to one consumer until lease_until, or 'dead'. Queue tables churn:
-- vacuum them early so claims do not wade through dead index entries.
CREATE TABLE jobs (
  id           text COLLATE "C" PRIMARY KEY,
  flow_id      text COLLATE "C" NOT NULL,
  request_id   text COLLATE "C" NOT NULL,
  state        text NOT NULL CHECK (state IN ('ready', 'leased', 'dead')),
  attempts     integer NOT NULL,
  max_attempts integer NOT NULL,
  run_at       double precision NOT NULL,
  enqueued_at  double precision NOT NULL,
  lease_until  double precision,
  lease_owner  text,
  last_error   text,
  dead_at      double precision
) WITH (autovacuum_vacuum_scale_factor = 0.01);
-- Partial indexes: each holds only the rows of its state, so claims and sweeps never scan dead rows.
CREATE INDEX jobs_ready ON jobs (run_at) WHERE state = 'ready';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'leased';
CREATE INDEX jobs_dead ON jobs (dead_at) WHERE state = 'dead';
CREATE INDEX jobs_dead_flow ON jobs (flow_id, dead_at) WHERE state = 'dead';

-- Transactional outbox (outbox.ts: PostgreSQL + RabbitMQ). accept() writes the request and its row
-- here in one transaction; a relay publishes the row to the broker and deletes it. available_at is
-- when the row may be claimed: the commit time, then "lease expiry" once a relay has claimed it.
CREATE TABLE outbox (
  id           text COLLATE "C" PRIMARY KEY, -- the job id
  flow_id      text COLLATE "C" NOT NULL,
  request_id   text COLLATE "C" NOT NULL,
  max_attempts integer NOT NULL,
  enqueued_at  double precision NOT NULL,
  available_at double precision NOT NULL,
  claims       integer NOT NULL DEFAULT 0
) WITH (autovacuum_vacuum_scale_factor = 0.01);
CREATE INDEX outbox_available ON outbox (available_at);

CREATE TABLE executions (
  id             text COLLATE "C" PRIMARY KEY,
  request_id     text COLLATE "C" NOT NULL,
  flow_id        text COLLATE "C" NOT NULL,
  status         text NOT NULL,
  attempts       integer NOT NULL,
  created_at     double precision NOT NULL,
  updated_at     double precision NOT NULL,
  finished_at    double precision,
  queue_delay_ms double precision,
  error          text,
  cursor         text, -- JSON {nextStep, input}
  -- Steps recorded so far: the next step's seq. Incremented by the UPDATE that locks the row, so
  -- concurrent appends never pick the same seq (a max(seq) subquery would read a stale snapshot).
  step_count     integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX executions_request_id ON executions (request_id);
CREATE INDEX executions_flow_id ON executions (flow_id, id);
CREATE INDEX executions_status ON executions (status, id);

-- One row per step record: appending is an insert, not a rewrite of a growing JSON array.
CREATE TABLE execution_steps (
  execution_id text COLLATE "C" NOT NULL,
  seq          integer NOT NULL,
  step_id      text NOT NULL,
  type         text NOT NULL,
  status       text NOT NULL,
  attempt      integer NOT NULL,
  started_at   double precision NOT NULL,
  finished_at  double precision NOT NULL,
  input        text,
  output       text,
  error        text,
  PRIMARY KEY (execution_id, seq)
);

-- checkWritable() upserts this single row: a real, synchronously committed write.
CREATE TABLE heartbeat (
  id integer PRIMARY KEY CHECK (id = 1),
  at double precision NOT NULL
);
`;
