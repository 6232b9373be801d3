/** A timeout firing this much later than due means the process was frozen meanwhile. */
export const STALL_MS = 1_000;
/** Then the call gets this long more, once: time to read an answer that arrived meanwhile. */
export const STALL_GRACE_MS = 1_000;

/**
 * The signal of one call: aborted when it runs past `timeoutMs` or when the runner stops (`stop`).
 * Not AbortSignal.any([AbortSignal.timeout(ms), stop]): on Node 20 each such signal leaves a little
 * behind on the long-lived `stop` signal for good (measured: ~50 bytes a call, 100 MB after two
 * million calls). Here the listener on `stop` is removed, and the timer cleared, once the call is
 * done. A timeout that fires after the process was frozen gives the call STALL_GRACE_MS more.
 */
export function callSignal(timeoutMs: number, stop: AbortSignal | undefined): { signal: AbortSignal; timedOut(): boolean; done(): void } {
  const controller = new AbortController();
  let timedOut = false;
  const due = performance.now() + timeoutMs;
  const expire = (): void => {
    // Far later than asked: this process was frozen (SIGSTOP, a paused VM) and its timers fire
    // before its sockets are read. The receiver had its whole time meanwhile, and its answer may
    // be waiting in the socket: read it first, rather than fail a call that succeeded and send it
    // again after the jobs behind it (a chaos review's finding).
    if (!late && performance.now() - due > STALL_MS) {
      late = true;
      timer = setTimeout(expire, STALL_GRACE_MS);
      timer.unref();
      return;
    }
    timedOut = true;
    controller.abort(new DOMException(`The operation timed out after ${timeoutMs} ms`, 'TimeoutError'));
  };
  let late = false;
  let timer = setTimeout(expire, timeoutMs);
  timer.unref();
  const onStop = (): void => controller.abort(stop?.reason);
  if (stop?.aborted) onStop();
  else stop?.addEventListener('abort', onStop, { once: true });
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    done() {
      clearTimeout(timer);
      stop?.removeEventListener('abort', onStop);
    },
  };
}
