/**
 * Identifies one delivery of a job: attempts grows with every claim, and the owner is the consumer
 * the job is leased to. A consumer that lost its lease (expired and re-claimed, or released) cannot
 * ack, nack or dead-letter the new delivery by mistake.
 */
export interface LeaseToken {
  jobId: string;
  attempts: number;
  owner: string;
}

/** SQL condition matching a job still leased under a token; binds (jobId, attempts, owner). */
export const LEASE_MATCH = "id = ? AND attempts = ? AND lease_owner = ? AND state = 'leased'";
