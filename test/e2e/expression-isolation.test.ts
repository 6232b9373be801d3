/**
 * A flow's heavy JSONata expression must not stall webhook intake: with EXPRESSION_WORKERS (the
 * default) it runs on a worker thread; on the main thread (0) every call waits for it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type RunningHookd, startHookd, waitFor } from '../helpers/hookd.js';

const running: RunningHookd[] = [];
afterEach(() => Promise.all(running.splice(0).map((h) => h.close())));

/** Sets up a heavy flow and a light one; starts the heavy one and times light calls meanwhile: the slowest, in ms. */
async function slowestCallDuringHeavyExpression(env: Record<string, string>): Promise<{ slowest: number; h: RunningHookd }> {
  const h = await startHookd(env);
  running.push(h);
  // Runs to jsonata's 1 s limit (D1012), once (no retry).
  expect((await h.api('PUT', '/api/flows/heavy', { retry: { maxAttempts: 1 }, steps: [{ id: 'spin', type: 'transform', expression: '$count([1..10000000].($ * 2))' }] })).status).toBe(201);
  expect((await h.api('PUT', '/api/flows/light', { steps: [] })).status).toBe(201);
  const post = (flow: string) => fetch(`${h.url}/hook/${flow}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  // Warm up the light path.
  for (let i = 0; i < 5; i++) expect((await post('light')).status).toBe(200);
  const timed = async (flow: string): Promise<number> => {
    const t0 = performance.now();
    expect((await post(flow)).status).toBe(200);
    return performance.now() - t0;
  };
  // The heavy flow's own answer counts too: its first step starts right after the commit, before
  // the answer is written.
  const heavy = timed('heavy');
  let slowest = 0;
  const until = Date.now() + 1_200;
  while (Date.now() < until) slowest = Math.max(slowest, await timed('light'));
  return { slowest: Math.max(slowest, await heavy), h };
}

describe('expression isolation', () => {
  it('webhook calls are answered at once while a flow evaluates an expression to its time limit (worker threads, the default)', async () => {
    const { slowest, h } = await slowestCallDuringHeavyExpression({});
    console.log(`expression workers: slowest webhook answer during a 1 s expression ${slowest.toFixed(0)} ms`);
    expect(slowest).toBeLessThan(400);
    await waitFor(async () => ((await h.api('GET', '/api/executions?flowId=heavy&status=dead')).body.items as unknown[]).length === 1, 10_000);
    const [dead] = (await h.api('GET', '/api/executions?flowId=heavy&status=dead')).body.items as Array<{ id: string }>;
    const exec = (await h.api('GET', `/api/executions/${dead!.id}`)).body;
    expect(JSON.stringify(exec)).toMatch(/D1012/);
  });

  it('on the main thread (EXPRESSION_WORKERS=0) the same expression holds every call until it stops', async () => {
    const { slowest } = await slowestCallDuringHeavyExpression({ EXPRESSION_WORKERS: '0' });
    console.log(`main thread: slowest webhook answer during a 1 s expression ${slowest.toFixed(0)} ms`);
    expect(slowest).toBeGreaterThan(600);
  });
});
