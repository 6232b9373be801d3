export { EmbeddedQueue, SWEEP_MS, type EmbeddedQueueOptions } from './embedded-queue.js';
export { EmbeddedConsumer, DEFAULT_GRACE_MS } from './consumer.js';
export { THROW_RETRY_DELAY_MS } from './delivery.js';
