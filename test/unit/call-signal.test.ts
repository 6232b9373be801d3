import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { callSignal, STALL_GRACE_MS, STALL_MS } from '../../src/flow/steps/call-signal.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('callSignal (an http step call)', () => {
  it('aborts on its timeout, or when the runner stops; done() leaves nothing behind', async () => {
    const stop = new AbortController();
    const a = callSignal(30, stop.signal);
    await new Promise((r) => setTimeout(r, 60));
    expect(a.signal.aborted).toBe(true);
    expect(a.timedOut()).toBe(true);
    a.done();
    const b = callSignal(10_000, stop.signal);
    stop.abort(new Error('stopping'));
    expect(b.signal.aborted).toBe(true);
    expect(b.timedOut()).toBe(false);
    expect(b.signal.reason).toEqual(new Error('stopping'));
    b.done();
    const c = callSignal(10_000, stop.signal); // already stopped
    expect(c.signal.aborted).toBe(true);
    c.done();
  });

  it('a timeout that fires after the process was frozen gives the call a moment more to read its answer, once', async () => {
    const c = callSignal(50, undefined);
    // Frozen: the timer cannot fire (a stand-in for SIGSTOP, during which the receiver answered).
    const until = performance.now() + STALL_MS + 300;
    while (performance.now() < until);
    await new Promise((r) => setTimeout(r, 300));
    expect(c.signal.aborted).toBe(false);
    await new Promise((r) => setTimeout(r, STALL_GRACE_MS));
    expect(c.signal.aborted).toBe(true);
    expect(c.timedOut()).toBe(true);
    c.done();
  });

  it("keeps no memory per call on the runner's long-lived signal (AbortSignal.any does, on Node 20)", () => {
    // A process of its own, to collect garbage between the measures (the build: npm test builds first).
    const script = `
      const { callSignal } = await import(${JSON.stringify(path.join(ROOT, 'dist/src/flow/steps/call-signal.js'))});
      const stop = new AbortController();
      const grow = async (one) => {
        for (let i = 0; i < 20000; i++) one();
        await new Promise((r) => setTimeout(r, 20));
        gc();
        const before = process.memoryUsage().heapUsed;
        for (let i = 0; i < 200000; i++) one();
        await new Promise((r) => setTimeout(r, 20));
        gc();
        return process.memoryUsage().heapUsed - before;
      };
      const ours = await grow(() => callSignal(60000, stop.signal).done());
      const any = await grow(() => AbortSignal.any([new AbortController().signal, stop.signal]));
      console.log(JSON.stringify({ ours, any }));`;
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const { ours, any } = JSON.parse(r.stdout) as { ours: number; any: number };
    console.log(`200,000 calls on one long-lived signal: heap +${(ours / 1e6).toFixed(1)} MB with callSignal, +${(any / 1e6).toFixed(1)} MB with AbortSignal.any (Node ${process.versions.node})`);
    expect(ours).toBeLessThan(2e6);
  });
});
