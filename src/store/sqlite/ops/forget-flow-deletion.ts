import type { Op } from './define-op.js';

/** Drop a flow's deletion record if it is still the one of that time (FlowStore.forgetDeletion). */
export const forgetFlowDeletion: Op<{ id: string; deletedAt: number }, boolean> = ({ db }) => {
  const del = db.prepare('DELETE FROM flow_deletions WHERE flow_id = ? AND deleted_at = ?');
  return (a) => del.run(a.id, a.deletedAt).changes > 0;
};
