import type { Op } from './define-op.js';

/** A dead letter removed for good (its request and execution record stay). False when not dead. */
export const discardDeadJob: Op<{ jobId: string }, boolean> = ({ db }) => {
  const remove = db.prepare(`DELETE FROM jobs WHERE id = ? AND state = 'dead'`);
  return (a) => remove.run(a.jobId).changes > 0;
};
