import type { ReceivedMessage } from '../../core/message.js';
import { toMessage as toMessageShared, type RequestRow } from '../rows.js';

/**
 * What differs in PostgreSQL's rows; the shared shapes and mappings are in ../rows.ts. node-pg
 * returns double precision and integer as numbers, boolean as boolean, bytea as Buffer (bigint,
 * e.g. count(*), would be a string: such columns are cast to integer in the queries).
 */
export { clip, requestColumns, toDeadLetter, toExecution, toJob, type ExecutionRow, type JobRow, type RequestColumns, type StepRow } from '../rows.js';
export type { RequestRow };

/** Columns of a job as claim and dead-letter queries select them. */
export const JOB_COLUMNS = 'id, flow_id, request_id, attempts, max_attempts, enqueued_at, last_error';

/** The path is stored JSON-encoded: a decoded `/hook/f/%00` holds U+0000, which a text column refuses. */
export function toMessage(r: RequestRow): ReceivedMessage {
  return toMessageShared({ ...r, path: JSON.parse(r.path) as string });
}
