import type { Op } from './define-op.js';

export const deleteFlow: Op<{ id: string }, boolean> = ({ db }) => {
  const del = db.prepare('DELETE FROM flows WHERE id = ?');
  return (a) => del.run(a.id).changes > 0;
};
