import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { MessageCacheStats } from '../store/message-cache.js';

/** Prometheus metrics of one hookd process. Labels stay low-cardinality (no flow ids). */
export function createMetrics(sources: { messageCache?: { stats(): MessageCacheStats } } = {}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'hookd_' });
  const responses = new Counter({
    name: 'hookd_ingress_responses_total',
    help: 'Webhook calls answered, by HTTP status',
    labelNames: ['status'] as const,
    registers: [registry],
  });
  const commitSeconds = new Histogram({
    name: 'hookd_ingress_commit_seconds',
    help: 'Request received → committed (durable) and ready to answer',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const authFailures = new Counter({
    name: 'hookd_ingress_auth_failures_total',
    help: 'Webhook calls refused by credentials, IP allowlist or rate limit, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const instances = new Gauge({
    name: 'hookd_cluster_instances',
    help: 'hookd instances sharing this backend, this one included (each enforces 1/n of every flow rate limit)',
    registers: [registry],
  });
  instances.set(1);
  const cache = sources.messageCache;
  if (cache !== undefined) {
    new Counter({
      name: 'hookd_message_cache_reads_total',
      help: 'Reads of a committed request (by its execution, or through the API): served from memory (hit) or from the store (miss); many misses with workers in this process: raise MESSAGE_CACHE',
      labelNames: ['result'] as const,
      registers: [registry],
      collect() {
        const s = cache.stats();
        this.reset();
        this.inc({ result: 'hit' }, s.hits);
        this.inc({ result: 'miss' }, s.misses);
      },
    });
    new Gauge({
      name: 'hookd_message_cache_bytes',
      help: 'Estimated bytes of committed messages held in memory for their first execution (MESSAGE_CACHE bounds it)',
      registers: [registry],
      collect() {
        this.set(cache.stats().bytes);
      },
    });
  }
  // One bound child per status seen: labels() hashes its arguments on every call.
  const byStatus = new Map<number, Counter.Internal>();
  const countResponse = (status: number): void => {
    let child = byStatus.get(status);
    if (child === undefined) byStatus.set(status, (child = responses.labels(String(status))));
    child.inc();
  };
  return { registry, responses, countResponse, commitSeconds, authFailures, instances };
}

export type Metrics = ReturnType<typeof createMetrics>;
