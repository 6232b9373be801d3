/** Ids of rows this process creates (jobs, outbox rows, executions): the process-wide UUIDv7. */
export { uuidv7 as newId } from '../../core/ids.js';
