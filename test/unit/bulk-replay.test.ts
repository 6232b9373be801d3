import { expect, it } from 'vitest';
import { bulkReplay } from '../../src/api/bulk-replay.js';
import { Replayer } from '../../src/api/replayer.js';
import { normalizeFlow } from '../../src/core/flow.js';
import type { ReceivedMessage } from '../../src/core/message.js';
import type { AcceptOutcome, ReceivedRange, RequestStore } from '../../src/store/contracts.js';
import { makeMessage } from '../conformance/helpers.js';

/** A request store holding `stored`, whose accepts are watched: how many wait at once, in which order. */
function watchedStore(stored: ReceivedMessage[], sizes: Map<string, number>) {
  const byId = new Map(stored.map((m) => [m.id, m]));
  const accepted: string[] = [];
  let waiting = 0;
  let mostWaiting = 0;
  const store = {
    get: async (id: string) => byId.get(id),
    listReceived: async (r: ReceivedRange) =>
      stored
        .filter((m) => m.flowId === r.flowId && m.receivedAt < r.until)
        .slice(0, r.limit)
        .map((m) => ({ id: m.id, receivedAt: m.receivedAt, bytes: sizes.get(m.id) ?? m.rawBody.length })),
    accept: async (m: ReceivedMessage): Promise<AcceptOutcome> => {
      waiting++;
      mostWaiting = Math.max(mostWaiting, waiting);
      accepted.push(String(m.headers['x-hookd-replay-of']));
      await new Promise((r) => setImmediate(r));
      waiting--;
      byId.set(m.id, m);
      return { kind: 'stored' };
    },
  } as unknown as RequestStore;
  return { store, accepted, mostWaiting: () => mostWaiting };
}

const flow = normalizeFlow({ steps: [] }, 'f', new Date());

it('bulk replay holds at most 16 MiB of bodies (or one request) and 32 requests at once, and accepts in the order of receipt', async () => {
  const t = Date.now() - 60_000;
  const msgs = Array.from({ length: 100 }, (_, i) => makeMessage({ flowId: 'f', receivedAt: t + i }));
  // Requests 10–19 take 9 MiB each in the store: one at a time; the rest are small.
  const sizes = new Map(msgs.slice(10, 20).map((m) => [m.id, 9 * 1024 * 1024]));
  const { store, accepted, mostWaiting } = watchedStore(msgs, sizes);
  const replayer = new Replayer({ requests: store, defaultMaxAttempts: 3, replayIdKey: Buffer.alloc(32, 7) });
  const result = await bulkReplay(store, replayer, flow, { flowId: 'f', until: Date.now(), limit: 1000, includeReplays: false });
  expect(result.replayed).toHaveLength(100);
  expect(accepted).toEqual(msgs.map((m) => m.id));
  expect(mostWaiting()).toBe(32);

  // Only large ones: never two 9 MiB bodies in memory, nor in one group commit.
  const big = Array.from({ length: 5 }, (_, i) => makeMessage({ flowId: 'f', receivedAt: t + i }));
  const w = watchedStore(big, new Map(big.map((m) => [m.id, 9 * 1024 * 1024])));
  const r2 = await bulkReplay(w.store, new Replayer({ requests: w.store, defaultMaxAttempts: 3, replayIdKey: Buffer.alloc(32, 7) }), flow, { flowId: 'f', until: Date.now(), limit: 1000, includeReplays: false });
  expect(r2.replayed).toHaveLength(5);
  expect(w.mostWaiting()).toBe(1);
});
