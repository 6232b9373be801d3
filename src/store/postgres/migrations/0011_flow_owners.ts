/**
 * With RabbitMQ every instance consumes every flow queue, so a flow's concurrency limit would hold
 * per instance. A flow with a limit is held by one instance at a time instead, the only one to
 * consume its queue (flow-owners.ts): its lease is renewed at every flow refresh and taken over
 * once it ran out.
 */
export const version = 11;
export const name = 'flow_owners';

export const sql = `
CREATE TABLE IF NOT EXISTS flow_owners (
  flow_id     text PRIMARY KEY,
  owner       text NOT NULL,
  lease_until double precision NOT NULL
);
`;
