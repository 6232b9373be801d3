import type { Op } from './define-op.js';

/** checkWritable(): the smallest real write (and fsync) the writer can do. */
export const touchHeartbeat: Op<null, null> = ({ db }) => {
  const upsert = db.prepare('INSERT INTO heartbeat (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at');
  return () => {
    upsert.run(Date.now());
    return null;
  };
};
