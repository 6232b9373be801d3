import type { Op } from './define-op.js';

/** Delete a flow and, when there was one, keep its deletion record (FlowStore.delete). */
export const deleteFlow: Op<{ id: string; deletedAt: number }, boolean> = ({ db }) => {
  const del = db.prepare('DELETE FROM flows WHERE id = ?');
  const record = db.prepare(
    'INSERT INTO flow_deletions (flow_id, deleted_at) VALUES (?, ?) ON CONFLICT (flow_id) DO UPDATE SET deleted_at = excluded.deleted_at',
  );
  return (a) => {
    if (del.run(a.id).changes === 0) return false;
    record.run(a.id, a.deletedAt);
    return true;
  };
};
