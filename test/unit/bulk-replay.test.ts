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

it('copyFiles: a file removed while it is read is ATTACHMENT_GONE, and the partial copy is removed', async () => {
  const { Readable } = await import('node:stream');
  const { copyFiles } = await import('../../src/attachments/copy-files.js');
  const { E, HookdError } = await import('../../src/core/errors.js');
  const removed: string[][] = [];
  let aborted = 0;
  const store = {
    open: async () => ({
      ref: { id: 'a1', contentType: 'image/png', size: 6, sha256: 'x' },
      stream: Readable.from(
        (async function* () {
          yield Buffer.from('abc');
          throw new HookdError(E.NOT_FOUND, 'attachment a1');
        })(),
      ),
    }),
    create: async () => ({ id: 'c1', size: 0, write: async () => {}, finish: async () => ({}), abort: async () => void aborted++ }),
    delete: async (ids: readonly string[]) => (removed.push([...ids]), ids.length),
  };
  const m = makeMessage({ rawAttachment: { id: 'a1', contentType: 'image/png', size: 6, sha256: 'x' } });
  await expect(copyFiles(store as never, m)).rejects.toMatchObject({ code: 'ATTACHMENT_GONE', statusCode: 409 });
  expect(aborted).toBe(1);
  expect(removed).toEqual([['c1']]);
});

it('parseIsoTime refuses dates that do not exist and keeps the ones that do', async () => {
  const { parseIsoTime } = await import('../../src/api/query-formats.js');
  for (const bad of ['2026-02-29T00:00:00Z', '2026-02-30T00:00:00Z', '2026-12-05T24:00:00Z', '2026-12-05T10:60:00Z', '2026-13-01T00:00:00Z', '2026-12-05T10:00:00+24:00', '2026-12-05 10:00:00Z']) {
    expect(parseIsoTime(bad), bad).toBeUndefined();
  }
  expect(parseIsoTime('2024-02-29T00:00:00Z')).toBe(Date.UTC(2024, 1, 29));
  expect(parseIsoTime('0000-02-29T00:00:00Z')).toBe(Date.parse('0000-02-29T00:00:00Z'));
  expect(parseIsoTime('2026-12-05T10:00:00.123456+01:00')).toBe(Date.UTC(2026, 11, 5, 9, 0, 0, 123));
});
