/**
 * GET /api/requests lists newest first by the time of receipt, not by id: ids a sender chose
 * (`x-request-id`, often random) do not sort by time. Same number of indexes as before, so an
 * accept writes no more: (flow_id, id) becomes (flow_id, received_at, id), and the retention
 * index gets the id as a tiebreak for requests received in the same millisecond. IF NOT EXISTS, as
 * in PostgreSQL's migration 6 (where an operator may build them beforehand, CONCURRENTLY).
 */
export const version = 3;
export const name = 'request_order';

export const sql = `
CREATE INDEX IF NOT EXISTS requests_flow_received ON requests (flow_id, received_at, id);
CREATE INDEX IF NOT EXISTS requests_received_at_id ON requests (received_at, id);
DROP INDEX IF EXISTS requests_flow_id;
DROP INDEX IF EXISTS requests_received_at;
`;
