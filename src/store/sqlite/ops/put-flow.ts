import type { Op } from './define-op.js';

export interface PutFlowArgs {
  id: string;
  /** The Flow as JSON text. */
  doc: string;
  /** Written only if no flow has this id (true), or if the stored one has this updatedAt (a string). */
  expect?: true | string;
}

/** True when written; false when `expect` did not hold (nothing written). */
export const putFlow: Op<PutFlowArgs, boolean> = ({ db }) => {
  const upsert = db.prepare('INSERT INTO flows (id, doc) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc');
  const insert = db.prepare('INSERT INTO flows (id, doc) VALUES (?, ?) ON CONFLICT (id) DO NOTHING');
  const replace = db.prepare("UPDATE flows SET doc = ? WHERE id = ? AND json_extract(doc, '$.updatedAt') = ?");
  const clearDeletion = db.prepare('DELETE FROM flow_deletions WHERE flow_id = ?');
  return (a) => {
    const written =
      a.expect === undefined
        ? upsert.run(a.id, a.doc).changes
        : a.expect === true
          ? insert.run(a.id, a.doc).changes
          : replace.run(a.doc, a.id, a.expect).changes;
    if (written === 0) return false;
    clearDeletion.run(a.id);
    return true;
  };
};
