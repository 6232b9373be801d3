/**
 * The instances that take part in holding limited flows (RabbitMQ mode, flow-owners.ts), each
 * with the lease of its last hold: their number sets each one's share of the limited flows, so
 * that the holds spread over the instances instead of going to the first one to ask.
 */
export const version = 12;
export const name = 'flow_holders';

export const sql = `
CREATE TABLE IF NOT EXISTS flow_holders (
  owner       text PRIMARY KEY,
  lease_until double precision NOT NULL
);
`;
