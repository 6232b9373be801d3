/**
 * Marks the builds that record a request a job carries (RABBITMQ_ACCEPT=broker: the job message
 * holds the request until a worker writes it here). An earlier build ignores that request, finds
 * none stored and dead-letters the job without it: an instance answers from the broker alone only
 * while no instance of a schema version below this one runs (InstanceRegistry.earlier, backends.ts).
 * The statement itself only documents this on the column.
 */
export const version = 17;
export const name = 'carried_requests';

export const sql = `
COMMENT ON COLUMN instances.schema_version IS 'highest schema version the instance''s build knows; from 17 on, builds record requests that RabbitMQ jobs carry';
`;
