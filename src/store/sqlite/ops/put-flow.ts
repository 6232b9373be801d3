import type { Op } from './define-op.js';

export interface PutFlowArgs {
  id: string;
  /** The Flow as JSON text. */
  doc: string;
}

export const putFlow: Op<PutFlowArgs, null> = ({ db }) => {
  const upsert = db.prepare('INSERT INTO flows (id, doc) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc');
  const clearDeletion = db.prepare('DELETE FROM flow_deletions WHERE flow_id = ?');
  return (a) => {
    upsert.run(a.id, a.doc);
    clearDeletion.run(a.id);
    return null;
  };
};
