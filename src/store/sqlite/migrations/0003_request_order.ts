/**
 * GET /api/requests lists newest first by the time of receipt, not by id: ids a sender chose
 * (`x-request-id`, often random) do not sort by time. Same number of indexes as before, so an
 * accept writes no more: (flow_id, id) becomes (flow_id, received_at, id), and the retention
 * index gets the id as a tiebreak for requests received in the same millisecond.
 */
export const version = 3;
export const name = 'request_order';

export const sql = `
DROP INDEX requests_flow_id;
CREATE INDEX requests_flow_received ON requests (flow_id, received_at, id);
DROP INDEX requests_received_at;
CREATE INDEX requests_received_at ON requests (received_at, id);
`;
