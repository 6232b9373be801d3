/**
 * Attachments in distributed mode (src/store/postgres/attachment-store.ts): every instance can serve
 * and forward a file another one received. A header row per attachment, its bytes in fixed-size
 * chunk rows.
 *
 * - meta is JSON {field?, filename?, contentType}, not three text columns: a multipart filename may
 *   hold U+0000, which a text column refuses (same reason as requests.path).
 * - size counts the bytes in chunk rows so far (the sweep reports what it frees), the total once
 *   finished; sha256 is set by finish.
 * - updated_at moves with every chunk written: an upload slower than the sweep's horizon is still
 *   alive. created_at ≤ updated_at, so the sweep finds candidates by the created_at index.
 * - Chunks cascade with their header, so no chunk outlives it; a chunk is written only while its
 *   header exists and is unfinished.
 * - Chunk data is STORAGE EXTERNAL (out of line, uncompressed): files are mostly compressed already
 *   (PDF, images, archives), and a byte range reads only the TOAST pages it covers.
 */
export const version = 4;
export const name = 'attachments';

export const sql = `
CREATE TABLE attachments (
  id          text COLLATE "C" PRIMARY KEY, -- UUIDv7
  meta        text NOT NULL,
  chunk_bytes integer NOT NULL CHECK (chunk_bytes > 0), -- every chunk but the last holds exactly this many bytes
  finished    boolean NOT NULL DEFAULT false,
  size        bigint NOT NULL DEFAULT 0,
  sha256      text,
  created_at  double precision NOT NULL, -- epoch ms, database clock
  updated_at  double precision NOT NULL
);
CREATE INDEX attachments_created_at ON attachments (created_at, id);

CREATE TABLE attachment_chunks (
  attachment_id text COLLATE "C" NOT NULL REFERENCES attachments (id) ON DELETE CASCADE,
  seq           integer NOT NULL, -- 0, 1, 2…: bytes [seq × chunk_bytes, …)
  data          bytea NOT NULL,
  PRIMARY KEY (attachment_id, seq)
);
ALTER TABLE attachment_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
`;
