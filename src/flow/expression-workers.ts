import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { ExpressionError, type ExpressionIsolate, type ExpressionLimits, toExpressionError } from './expression.js';

/**
 * JSONata evaluations off the main thread (ExpressionIsolate): a few worker threads, each running
 * one evaluation at a time. jsonata's own time limit is checked between evaluation steps and,
 * meanwhile, holds the event loop: an expression that runs to its 1 s limit on the main thread
 * stalls every webhook call for that second (measured: not one 10 ms timer fired), and one whose
 * time goes into a few native calls (`$split`, `$join` over millions of items) ran 3 s past a 1 s
 * limit. Here the main thread waits without blocking, an evaluation still running
 * HARD_LIMIT_GRACE_MS past its limit has its worker terminated (replaced at the next use).
 *
 * No heap limit of their own (Worker resourceLimits): with one, V8 ended the whole process instead
 * of the worker for some expressions (`$join` of 10 million `$string`s at 512 MiB; most at 32 and
 * 128 MiB: "Reached heap limit", not ERR_WORKER_OUT_OF_MEMORY), where the main thread's larger
 * default heap got through them. A worker shares the process's default limits, as before.
 *
 * Only what the fast path (expression-fast-path.ts) cannot decide comes here: the input and result
 * cross by structured clone (a JSON message view: plain data).
 *
 * Overflow: a running evaluation cannot be preempted, so a light one arriving while heavy ones hold
 * every worker would wait for one of them to end (up to limit + grace: 1.5 s). Once every thread
 * has been busy with its current evaluation for OVERFLOW_AFTER_MS, one more is started (`size` more
 * at most). It takes only evaluations of expressions not known to be heavy, so a heavy expression
 * cannot grow the pool for itself, and ends after being idle for a few seconds. It starts before a
 * light evaluation needs it because a thread is slow to start: 80-300 ms on a 2-core test machine,
 * 300-740 ms while two heavy evaluations ran there.
 */
export interface ExpressionWorkersOptions {
  /** Worker threads (evaluations at once); as many overflow threads again for light ones. */
  size: number;
  /** How long an overflow thread stays idle before it ends (default 5 s; tests shorten it). */
  overflowIdleMs?: number;
}

export interface ExpressionWorkers extends ExpressionIsolate {
  /** Terminate the workers; evaluations waiting or running fail. */
  close(): Promise<void>;
  /** Worker threads started and not ended, overflow ones included. */
  threads(): number;
}

/** How long past its time limit an evaluation may run before its worker is terminated. */
export const HARD_LIMIT_GRACE_MS = 500;
/**
 * An evaluation running this long makes its expression heavy (until one of its evaluations takes
 * less); every thread busy this long with its current evaluation starts an overflow thread.
 */
export const OVERFLOW_AFTER_MS = 50;
const OVERFLOW_IDLE_MS = 5_000;
/** Heavy expressions remembered (the oldest forgotten first). */
const HEAVY_KEPT = 1_000;
/** Compiled expressions each worker keeps (by source and limits). */
const WORKER_CACHE = 1_000;

interface Task {
  source: string;
  limits: ExpressionLimits;
  input: unknown;
  /** Variables the expression reads besides its input ($message). */
  bindings: Record<string, unknown> | undefined;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

interface Slot {
  /** An overflow thread: takes light evaluations only, ends when idle. */
  overflow: boolean;
  worker: Worker | undefined;
  /** The worker has loaded jsonata: its start is not counted as evaluation time. */
  ready: boolean;
  task: Task | undefined;
  /** When the task began on a ready worker. */
  since: number | undefined;
  /** The task's hard limit. */
  timer: NodeJS.Timeout | undefined;
  /** An overflow thread's end once idle. */
  idleTimer: NodeJS.Timeout | undefined;
}

interface Answer {
  ready?: boolean;
  ok: boolean;
  /** The evaluation's time in the worker (the main thread's clock adds its own delays). */
  ms?: number;
  value?: unknown;
  error?: { message: string; code?: string; position?: number; token?: string };
}

// CommonJS, run with `eval`: nothing to build, and the same from sources (vitest) and from dist.
const CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const jsonata = require(workerData.jsonata);
const cache = new Map();
parentPort.on('message', async ({ source, timeoutMs, stack, input, bindings }) => {
  const t0 = performance.now();
  try {
    const key = timeoutMs + ':' + stack + ':' + source;
    let expr = cache.get(key);
    if (expr === undefined) {
      expr = jsonata(source, { timeout: timeoutMs, stack });
      if (cache.size >= workerData.cacheSize) cache.delete(cache.keys().next().value);
      cache.set(key, expr);
    }
    const value = await expr.evaluate(input, bindings ?? {});
    try {
      parentPort.postMessage({ ok: true, value, ms: performance.now() - t0 });
    } catch {
      // Not cloneable (a function or a jsonata lambda in it): what JSON keeps of it without them, or null.
      let kept = null;
      const drop = (k, v) => (typeof v === 'function' || (typeof v === 'object' && v !== null && v._jsonata_lambda === true) ? undefined : v);
      try { kept = JSON.parse(JSON.stringify(value, drop) ?? 'null'); } catch {}
      parentPort.postMessage({ ok: true, value: kept, ms: performance.now() - t0 });
    }
  } catch (err) {
    const e = typeof err === 'object' && err !== null ? err : { message: String(err) };
    parentPort.postMessage({ ok: false, ms: performance.now() - t0, error: {
      message: typeof e.message === 'string' ? e.message : String(err),
      code: typeof e.code === 'string' ? e.code : undefined,
      position: typeof e.position === 'number' ? e.position : undefined,
      token: typeof e.token === 'string' ? e.token : undefined,
    } });
  }
});
parentPort.postMessage({ ready: true });
`;

export function createExpressionWorkers(o: ExpressionWorkersOptions): ExpressionWorkers {
  const size = Math.max(1, Math.floor(o.size));
  const overflowIdleMs = o.overflowIdleMs ?? OVERFLOW_IDLE_MS;
  const jsonataPath = createRequire(import.meta.url).resolve('jsonata');
  const newSlot = (overflow: boolean): Slot => ({ overflow, worker: undefined, ready: false, task: undefined, since: undefined, timer: undefined, idleTimer: undefined });
  const slots: Slot[] = Array.from({ length: size }, () => newSlot(false));
  /** Overflow threads: `size` at most. */
  const extra: Slot[] = [];
  const waiting: Task[] = [];
  /** Expressions whose last evaluation took OVERFLOW_AFTER_MS or more (insertion order: oldest first). */
  const heavy = new Set<string>();
  let watchTimer: NodeJS.Timeout | undefined;
  let closed = false;

  const spawn = (slot: Slot): Worker => {
    const worker = new Worker(CODE, {
      eval: true,
      workerData: { jsonata: jsonataPath, cacheSize: WORKER_CACHE },
    });
    slot.ready = false;
    worker.on('message', (answer: Answer) => {
      if (slot.worker !== worker) return;
      if (answer.ready === true) {
        slot.ready = true;
        if (slot.task !== undefined) {
          slot.since = performance.now();
          if (slot.timer === undefined) armHardLimit(slot, slot.task, worker);
        }
        watch();
        return;
      }
      const task = slot.task;
      if (task === undefined) return;
      finish(slot, answer.ms);
      if (answer.ok) task.resolve(answer.value);
      else task.reject(toExpressionError(answer.error ?? 'no error given', 'JSONata evaluation failed'));
    });
    // Any end while an evaluation ran (an uncaught error in the thread): that evaluation fails, the next gets a new worker.
    const ended = (err: Error | undefined): void => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      const task = slot.task;
      if (task === undefined) return;
      finish(slot);
      task.reject(new ExpressionError(`JSONata evaluation failed: its worker thread ended (${err?.message ?? 'exit'})`));
    };
    worker.on('error', ended);
    worker.on('exit', () => ended(undefined));
    worker.unref();
    return worker;
  };

  const allSlots = (): Slot[] => (extra.length === 0 ? slots : [...slots, ...extra]);

  /**
   * Its last evaluation took long, or one runs long now: a flood of a new heavy expression, none of
   * whose evaluations has ended yet, must not take the overflow threads either.
   */
  const isHeavy = (source: string): boolean => {
    if (heavy.has(source)) return true;
    const now = performance.now();
    return allSlots().some((s) => s.task?.source === source && s.since !== undefined && now - s.since >= OVERFLOW_AFTER_MS);
  };

  const note = (source: string, ms: number): void => {
    heavy.delete(source);
    if (ms < OVERFLOW_AFTER_MS) return;
    const oldest = heavy.size >= HEAVY_KEPT ? heavy.values().next().value : undefined;
    if (oldest !== undefined) heavy.delete(oldest);
    heavy.add(source);
  };

  /** The slot's evaluation is over (in `ms` by the worker's clock, if it answered): free it and start the next waiting one it may take. */
  const finish = (slot: Slot, ms?: number): void => {
    clearTimeout(slot.timer);
    slot.timer = undefined;
    const took = ms ?? (slot.since === undefined ? undefined : performance.now() - slot.since);
    if (slot.task !== undefined && took !== undefined) note(slot.task.source, took);
    slot.task = undefined;
    slot.since = undefined;
    slot.worker?.unref();
    const next = slot.overflow ? takeLight() : takeNext();
    if (next !== undefined) run(slot, next);
    else {
      if (slot.overflow) rest(slot);
      watch();
    }
  };

  /**
   * The next evaluation for a free worker: the oldest whose expression runs on fewer than all but
   * one of the workers, so that one flow's heavy expressions leave a worker to the others'
   * (a review saw 20 light transforms wait 3 s behind 6 heavy ones); the oldest of all when every
   * waiting one is of such an expression (a worker never idles while one waits).
   */
  const takeNext = (): Task | undefined => {
    if (waiting.length <= 1) return waiting.shift();
    const cap = Math.max(1, size - 1);
    for (let i = 0; i < waiting.length; i++) {
      const source = waiting[i]!.source;
      let running = 0;
      for (const s of slots) if (s.task?.source === source) running++;
      if (running < cap) return waiting.splice(i, 1)[0];
    }
    return waiting.shift();
  };

  /**
   * The next evaluation for an overflow thread: the oldest of an expression not known to be heavy.
   * None: the thread idles even while heavy ones wait (they wait for the `size` workers).
   */
  const takeLight = (): Task | undefined => {
    const i = waiting.findIndex((t) => !isHeavy(t.source));
    return i < 0 ? undefined : waiting.splice(i, 1)[0];
  };

  /** When every thread has been busy with its current evaluation since (undefined: one is free or starting). */
  const allBusySince = (except?: Slot): number | undefined => {
    let latest = -Infinity;
    for (const s of allSlots()) {
      if (s === except) continue;
      if (s.task === undefined || s.since === undefined) return undefined;
      latest = Math.max(latest, s.since);
    }
    return latest;
  };

  /** Start an overflow thread once every thread has been busy for OVERFLOW_AFTER_MS (checked again on each change). */
  const watch = (): void => {
    clearTimeout(watchTimer);
    watchTimer = undefined;
    if (closed || extra.length >= size) return;
    const since = allBusySince();
    if (since === undefined) return;
    const wait = since + OVERFLOW_AFTER_MS - performance.now();
    if (wait > 0) {
      // Unref'd: while every thread is busy, a running evaluation keeps the process up.
      watchTimer = setTimeout(watch, Math.ceil(wait));
      watchTimer.unref();
      return;
    }
    const slot = newSlot(true);
    extra.push(slot);
    slot.worker = spawn(slot); // now, not when a light one comes: a thread takes a while to start
    const next = takeLight();
    if (next !== undefined) run(slot, next);
    else rest(slot);
  };

  /**
   * An idle overflow thread ends after overflowIdleMs, unless every other thread is still busy long:
   * it would be started again at once (a flood of one heavy expression keeps one idle for light ones).
   */
  const rest = (slot: Slot): void => {
    clearTimeout(slot.idleTimer);
    slot.idleTimer = setTimeout(() => {
      slot.idleTimer = undefined;
      if (closed || slot.task !== undefined) return;
      const since = allBusySince(slot);
      if (since !== undefined && performance.now() - since >= OVERFLOW_AFTER_MS) return rest(slot);
      extra.splice(extra.indexOf(slot), 1);
      const worker = slot.worker;
      slot.worker = undefined;
      void worker?.terminate();
      watch();
    }, overflowIdleMs);
    slot.idleTimer.unref();
  };

  /** Terminate the slot's thread if `task` still runs its time limit + grace from now. */
  const armHardLimit = (slot: Slot, task: Task, worker: Worker): void => {
    const { timeoutMs } = task.limits;
    slot.timer = setTimeout(() => {
      if (slot.task !== task) return;
      // Past its limit and its grace: jsonata's own check did not get a turn. Stop the thread.
      slot.worker = undefined;
      finish(slot);
      void worker.terminate();
      task.reject(
        new ExpressionError(
          `JSONata evaluation failed: Evaluation timeout after ${timeoutMs} milliseconds (stopped after ${timeoutMs + HARD_LIMIT_GRACE_MS} ms). Check for infinite loop (D1012)`,
          'D1012',
        ),
      );
    }, timeoutMs + HARD_LIMIT_GRACE_MS);
  };

  const run = (slot: Slot, task: Task): void => {
    clearTimeout(slot.idleTimer);
    slot.idleTimer = undefined;
    slot.task = task;
    const worker = (slot.worker ??= spawn(slot));
    slot.since = slot.ready ? performance.now() : undefined;
    worker.ref(); // an evaluation under way keeps the process up, as one on the main thread would
    const { timeoutMs, stack } = task.limits;
    // The hard limit runs from when the thread can evaluate: a thread still starting (hundreds of
    // ms on a busy machine, more than the limit + grace under heavy load) does not use it up.
    if (slot.ready) armHardLimit(slot, task, worker);
    try {
      worker.postMessage({ source: task.source, timeoutMs, stack, input: task.input, ...(task.bindings === undefined ? {} : { bindings: task.bindings }) });
    } catch (err) {
      // An input that cannot be cloned (not plain data): evaluated nowhere, a clear failure.
      finish(slot);
      task.reject(new ExpressionError(`JSONata evaluation failed: its input cannot be sent to the expression worker (${(err as Error).message})`));
      return;
    }
    watch();
  };

  return {
    evaluate(source, limits, input, bindings) {
      if (closed) return Promise.reject(new ExpressionError('JSONata evaluation failed: the expression workers are closed'));
      return new Promise<unknown>((resolve, reject) => {
        const task: Task = { source, limits, input, bindings, resolve, reject };
        const free = (s: Slot): boolean => s.task === undefined;
        const idle = slots.find(free) ?? (isHeavy(source) ? undefined : extra.find(free));
        if (idle === undefined) waiting.push(task);
        else run(idle, task);
      });
    },
    threads() {
      return allSlots().filter((s) => s.worker !== undefined).length;
    },
    async close() {
      closed = true;
      clearTimeout(watchTimer);
      const gone = new ExpressionError('JSONata evaluation failed: the expression workers are closed');
      for (const task of waiting.splice(0)) task.reject(gone);
      await Promise.all(
        [...slots, ...extra.splice(0)].map(async (slot) => {
          const { worker, task } = slot;
          slot.worker = undefined;
          clearTimeout(slot.timer);
          clearTimeout(slot.idleTimer);
          slot.task = undefined;
          task?.reject(gone);
          await worker?.terminate();
        }),
      );
    },
  };
}
