export { EmbeddedQueue, SWEEP_MS, type EmbeddedQueueOptions } from './embedded-queue.js';
export { EmbeddedConsumer } from './consumer.js';
export { DEFAULT_GRACE_MS, THROW_RETRY_DELAY_MS } from '../contract.js';
