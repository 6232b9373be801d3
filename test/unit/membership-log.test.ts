import { expect, it } from 'vitest';
import type { InstanceRegistry } from '../../src/store/backend.js';
import { startMembership } from '../../src/store/membership.js';

/**
 * The database down for a while: the instance beat (every FLOW_REFRESH, 2 s by default) logged one
 * warning with a stack at every beat, and nothing when beats worked again. Now: the first failure,
 * then a summary per window, then one line when it works again.
 */
it('beats failing for a while: one line when it starts, one when it ends, not one per beat', async () => {
  const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
  const at = (level: string) => (obj: object, msg?: string) => lines.push({ level, obj: obj as Record<string, unknown>, msg: msg ?? '' });
  const logger = { info: at('info'), warn: at('warn'), error: at('error') };
  let down = true;
  let beats = 0;
  const registry: InstanceRegistry = {
    beat: async () => {
      beats++;
      if (down) throw new Error('connection refused');
      return { live: 2, runningFlows: 2 };
    },
    leave: async () => {},
  };
  const m = await startMembership(registry, 10, logger);
  await new Promise((r) => setTimeout(r, 400));
  expect(beats).toBeGreaterThan(10);
  expect(lines.filter((l) => /beat failed/.test(l.msg))).toHaveLength(1);
  down = false;
  await new Promise((r) => setTimeout(r, 100));
  expect(lines.at(-1)).toMatchObject({ level: 'info', msg: 'instance registry: beats work again', obj: { failures: expect.any(Number) } });
  expect(Number(lines.at(-1)!.obj.failures)).toBeGreaterThan(10);
  expect(m.share()).toBe(0.5);
  await m.stop();
});
