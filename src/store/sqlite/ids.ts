/** Ids of rows the writer creates (jobs, executions): the process-wide UUIDv7. */
export { uuidv7 as newId } from '../../core/ids.js';
