import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { finishesWithin } from '../core/finishes-within.js';
import type { FlowBacklog, QueueStats } from '../queue/contract.js';
import type { MessageCacheStats } from '../store/message-cache.js';

export interface MetricSources {
  messageCache?: { stats(): MessageCacheStats };
  /** The queue's depth, read at each scrape (the backend opens after the metrics: looked up then). */
  queue?: () => { stats(): Promise<QueueStats>; flowBacklog?(): Promise<FlowBacklog[]> } | undefined;
  /** Distributed mode with RabbitMQ: the hookd_broker_confirm_seconds histogram exists. */
  brokerConfirms?: boolean;
  /** Embedded mode: the WAL metrics (hookd_store_wal_sync_seconds, hookd_store_wal_restarts_total) exist. */
  embeddedStore?: boolean;
  /** /readyz's check (a write committed now; rejects when it cannot be): hookd_ready, at each scrape. */
  ready?: () => Promise<void>;
}

/**
 * How long a scrape waits for what it asks the store or broker (the queue's depth, the readiness
 * check), as /readyz does: a database that went silent (no RST) would otherwise hold the whole
 * scrape until the query timeout, and every other metric would be lost with it.
 */
export const SCRAPE_CHECK_TIMEOUT_MS = 2_000;

/** The value, or undefined when it failed or did not come within SCRAPE_CHECK_TIMEOUT_MS. */
async function answerWithin<T>(p: Promise<T>): Promise<T | undefined> {
  let value: T | undefined;
  const got = p.then((v) => {
    value = v;
  });
  try {
    return (await finishesWithin(got, SCRAPE_CHECK_TIMEOUT_MS)) ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Prometheus metrics of one hookd process. Labels stay low-cardinality: no request or job ids; flow
 * ids only on the backlog gauges, whose series are the flows with jobs waiting (at most the flows
 * defined).
 */
export function createMetrics(sources: MetricSources = {}) {
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
    help: 'Request received → committed (durable) and ready to answer (RABBITMQ_ACCEPT=broker: → confirmed by the broker)',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const confirmSeconds = sources.brokerConfirms
    ? new Histogram({
        name: 'hookd_broker_confirm_seconds',
        help: 'A job published to RabbitMQ → its publisher confirm (an accepted request spends this within hookd_ingress_commit_seconds, after the PostgreSQL commit; with RABBITMQ_ACCEPT=broker, all of it but the publish)',
        buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
        registers: [registry],
      })
    : undefined;
  const walSyncSeconds = sources.embeddedStore
    ? new Histogram({
        name: 'hookd_store_wal_sync_seconds',
        help: 'Embedded mode: each fsync of the SQLite WAL that made commits durable (one covers every commit before it); answers wait for it, so a slow disk shows here first',
        buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
        registers: [registry],
      })
    : undefined;
  const walRestarts = sources.embeddedStore
    ? new Counter({
        name: 'hookd_store_wal_restarts_total',
        help: 'Embedded mode: times the checkpointer started the SQLite WAL over after it passed 16 MiB (a WAL that never restarts under steady writes grows without bound)',
        registers: [registry],
      })
    : undefined;
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
  const flowsHeld = new Gauge({
    name: 'hookd_flows_held',
    help: 'RabbitMQ mode: flows with a concurrency limit or an execution rate this instance holds, the only instance to consume their queues (docs/flows.md#concurrency)',
    registers: [registry],
  });
  const cache = sources.messageCache;
  if (cache !== undefined) {
    new Counter({
      name: 'hookd_message_cache_reads_total',
      help: 'Reads of a committed request by its execution: served from memory (hit) or from the store (miss); many misses with workers in this process: raise MESSAGE_CACHE (API reads go to the store and are not counted)',
      labelNames: ['result'] as const,
      registers: [registry],
      collect() {
        const s = cache.stats();
        this.reset();
        this.inc({ result: 'hit' }, s.hits);
        this.inc({ result: 'miss' }, s.misses);
      },
    });
    new Counter({
      name: 'hookd_message_cache_refused_total',
      help: 'Committed messages not kept in memory because the cache was full of messages still waiting for their execution (embedded mode): those executions read them from the store',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(cache.stats().refused);
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
  const queueOf = sources.queue;
  if (queueOf !== undefined) {
    new Gauge({
      name: 'hookd_queue_jobs',
      help: 'Jobs in the queue by state: ready (due now), in_flight (leased or delivered, running or waiting for a slot), delayed (retries not yet due), dead (dead letters)',
      labelNames: ['state'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        const queue = queueOf();
        if (queue === undefined) return;
        // Store or broker down or silent: no figure rather than a stale one (/readyz tells why).
        const s: QueueStats | undefined = await answerWithin(queue.stats());
        if (s === undefined) return;
        this.set({ state: 'ready' }, s.ready);
        this.set({ state: 'in_flight' }, s.inFlight);
        this.set({ state: 'delayed' }, s.delayed);
        this.set({ state: 'dead' }, s.dead);
      },
    });
  }
  const ready = sources.ready;
  if (ready !== undefined) {
    new Gauge({
      name: 'hookd_ready',
      help: '1 when a write can be committed now (the check of /readyz, run at each scrape), 0 when the store or broker cannot commit one within 2 s, or while shutting down',
      registers: [registry],
      async collect() {
        this.set((await answerWithin(ready().then(() => true))) === true ? 1 : 0);
      },
    });
  }
  if (queueOf !== undefined) {
    // Both gauges from one query per scrape (collect() of each runs in the same scrape).
    let round: Promise<FlowBacklog[] | undefined> | undefined;
    const backlog = (): Promise<FlowBacklog[] | undefined> => {
      const queue = queueOf();
      if (queue?.flowBacklog === undefined) return Promise.resolve(undefined);
      round ??= answerWithin(queue.flowBacklog()).finally(() => {
        round = undefined;
      });
      return round;
    };
    new Gauge({
      name: 'hookd_queue_flow_ready_jobs',
      help: 'Database queues: jobs due now and waiting for a worker, by flow (flows with none are left out): which flow backs up',
      labelNames: ['flow'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const f of (await backlog()) ?? []) this.set({ flow: f.flowId }, f.ready);
      },
    });
    new Gauge({
      name: 'hookd_queue_flow_oldest_ready_seconds',
      help: "Database queues: how long the flow's oldest due job has waited for a worker, by flow (flows with none are left out); growing: its jobs do not start (workers busy or stuck, a concurrency limit or rate, a stopped flow)",
      labelNames: ['flow'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const f of (await backlog()) ?? []) this.set({ flow: f.flowId }, f.oldestReadyMs / 1000);
      },
    });
  }
  const executions = new Counter({
    name: 'hookd_executions_finished_total',
    help: 'Flow executions this process brought to an end, by status (completed, filtered, dead)',
    labelNames: ['status'] as const,
    registers: [registry],
  });
  const carriedRequests = new Counter({
    name: 'hookd_carried_request_deliveries_total',
    help: "RABBITMQ_ACCEPT=broker: deliveries of jobs that carry their request, by what the store said: recorded (stored now, or by an earlier delivery of the same job: every retry counts again) or duplicate (another request of the flow has the id: a sender's retry, acked unrun; counts the senders' duplicates)",
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const stepSeconds = new Histogram({
    name: 'hookd_step_duration_seconds',
    help: 'Step runs by step type and result (completed, filtered, failed)',
    labelNames: ['type', 'status'] as const,
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [registry],
  });
  const queueDelaySeconds = new Histogram({
    name: 'hookd_queue_delay_seconds',
    help: "Request received → its execution's first step started (first deliveries)",
    buckets: [0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300],
    registers: [registry],
  });

  const responseOf = bound((status: string) => responses.labels(status));
  const executionOf = bound((status: string) => executions.labels(status));
  const stepOf = bound((type: string, status: string) => stepSeconds.labels(type, status));
  const countResponse = (status: number): void => responseOf(String(status)).inc();
  const countExecution = (status: string): void => executionOf(status).inc();
  const carriedOf = bound((outcome: string) => carriedRequests.labels(outcome));
  const countCarried = (outcome: string): void => carriedOf(outcome).inc();
  const observeStep = (type: string, status: string, seconds: number): void => stepOf(type, status).observe(seconds);
  return { registry, responses, countResponse, commitSeconds, confirmSeconds, walSyncSeconds, walRestarts, authFailures, instances, flowsHeld, countExecution, countCarried, observeStep, queueDelaySeconds };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** One bound child per label values seen: a metric's labels() hashes its arguments on every call. */
function bound<C>(make: (...values: string[]) => C): (...values: string[]) => C {
  const children = new Map<string, C>();
  return (...values) => {
    const key = values.join('\0');
    let child = children.get(key);
    if (child === undefined) children.set(key, (child = make(...values)));
    return child;
  };
}
