export {
  RabbitMqQueue,
  CarriedToDeletedFlow,
  openRabbitMqQueue,
  type RabbitMqQueueOptions,
  type PublishableJob,
} from './rabbitmq-queue.js';
export {
  Topology,
  DEFAULT_DELAY_LEVELS_MS,
  DEAD_KEY,
  DELAY_HEADER,
  flowKey,
  jobRoutingKey,
  retryRoutingKey,
} from './topology.js';
export { encodeJob, decodeJob, requestPayload, JOB_TYPE, DEAD_LETTER_TYPE, type JobMessage } from './job-message.js';
export { DEFAULT_GRACE_MS, THROW_RETRY_DELAY_MS } from '../contract.js';
export type { QueueLogger } from './logger.js';
