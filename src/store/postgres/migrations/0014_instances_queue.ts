/**
 * The queue each instance uses (`postgres` or `rabbitmq`): an instance started with the other one
 * while instances of this one run refuses to start (queue-mode.ts). Null: an instance of an
 * earlier version (not judged).
 */
export const version = 14;
export const name = 'instances_queue';

export const sql = `
ALTER TABLE instances ADD COLUMN IF NOT EXISTS queue text;
`;
