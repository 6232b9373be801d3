import { describe, expect, it } from 'vitest';
import { createMetrics, SCRAPE_CHECK_TIMEOUT_MS } from '../../src/http/metrics.js';
import type { QueueStats } from '../../src/queue/contract.js';

const stats: QueueStats = { ready: 3, inFlight: 1, delayed: 2, dead: 4 };
const never = <T>() => new Promise<T>(() => {});

describe('/metrics while the store or broker does not answer', () => {
  it('answers in bounded time with every other metric (a silent database must not take the metrics with it)', async () => {
    const m = createMetrics({ queue: () => ({ stats: never }), ready: never });
    m.countResponse(503);
    const t0 = Date.now();
    const text = await m.registry.metrics();
    const took = Date.now() - t0;
    expect(took).toBeLessThan(SCRAPE_CHECK_TIMEOUT_MS + 1_000);
    expect(text).toContain('hookd_ingress_responses_total{status="503"} 1');
    expect(text).not.toMatch(/^hookd_queue_jobs\{/m);
    expect(text).toMatch(/^hookd_ready 0$/m);
  });

  it('hookd_ready says whether a write can be committed now, as /readyz does', async () => {
    let up = true;
    const m = createMetrics({
      queue: () => ({ stats: async () => stats }),
      ready: async () => {
        if (!up) throw new Error('connection refused');
      },
    });
    let text = await m.registry.metrics();
    expect(text).toMatch(/^hookd_ready 1$/m);
    expect(text).toMatch(/^hookd_queue_jobs\{state="dead"\} 4$/m);
    up = false;
    text = await m.registry.metrics();
    expect(text).toMatch(/^hookd_ready 0$/m);
  });
});

describe('the backlog per flow (database queues)', () => {
  it('names the flows whose jobs wait, how many, and how long the oldest has waited', async () => {
    let rounds = 0;
    const m = createMetrics({
      queue: () => ({
        stats: async () => stats,
        flowBacklog: async () => {
          rounds++;
          return [
            { flowId: 'orders', ready: 120, oldestReadyMs: 95_000 },
            { flowId: 'audit', ready: 1, oldestReadyMs: 12 },
          ];
        },
      }),
    });
    const text = await m.registry.metrics();
    expect(text).toMatch(/^hookd_queue_flow_ready_jobs\{flow="orders"\} 120$/m);
    expect(text).toMatch(/^hookd_queue_flow_ready_jobs\{flow="audit"\} 1$/m);
    expect(text).toMatch(/^hookd_queue_flow_oldest_ready_seconds\{flow="orders"\} 95$/m);
    expect(text).toMatch(/^hookd_queue_flow_oldest_ready_seconds\{flow="audit"\} 0.012$/m);
    expect(rounds).toBe(1); // one query per scrape for both
  });

  it('leaves them out where the queue cannot tell (RabbitMQ) or does not answer', async () => {
    const rabbit = await createMetrics({ queue: () => ({ stats: async () => stats }) }).registry.metrics();
    expect(rabbit).not.toMatch(/^hookd_queue_flow_/m);
    const silent = await createMetrics({ queue: () => ({ stats: async () => stats, flowBacklog: never }) }).registry.metrics();
    expect(silent).not.toMatch(/^hookd_queue_flow_/m);
  });
});
