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
 */
export interface ExpressionWorkersOptions {
  /** Worker threads (evaluations at once). */
  size: number;
}

export interface ExpressionWorkers extends ExpressionIsolate {
  /** Terminate the workers; evaluations waiting or running fail. */
  close(): Promise<void>;
}

/** How long past its time limit an evaluation may run before its worker is terminated. */
export const HARD_LIMIT_GRACE_MS = 500;
/** Compiled expressions each worker keeps (by source and limits). */
const WORKER_CACHE = 1_000;

interface Task {
  source: string;
  limits: ExpressionLimits;
  input: unknown;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker | undefined;
  task: Task | undefined;
  timer: NodeJS.Timeout | undefined;
}

interface Answer {
  ok: boolean;
  value?: unknown;
  error?: { message: string; code?: string; position?: number; token?: string };
}

// CommonJS, run with `eval`: nothing to build, and the same from sources (vitest) and from dist.
const CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const jsonata = require(workerData.jsonata);
const cache = new Map();
parentPort.on('message', async ({ source, timeoutMs, stack, input }) => {
  try {
    const key = timeoutMs + ':' + stack + ':' + source;
    let expr = cache.get(key);
    if (expr === undefined) {
      expr = jsonata(source, { timeout: timeoutMs, stack });
      if (cache.size >= workerData.cacheSize) cache.delete(cache.keys().next().value);
      cache.set(key, expr);
    }
    const value = await expr.evaluate(input, {});
    try {
      parentPort.postMessage({ ok: true, value });
    } catch {
      // Not cloneable (a function or a jsonata lambda in it): what JSON keeps of it without them, or null.
      let kept = null;
      const drop = (k, v) => (typeof v === 'function' || (typeof v === 'object' && v !== null && v._jsonata_lambda === true) ? undefined : v);
      try { kept = JSON.parse(JSON.stringify(value, drop) ?? 'null'); } catch {}
      parentPort.postMessage({ ok: true, value: kept });
    }
  } catch (err) {
    const e = typeof err === 'object' && err !== null ? err : { message: String(err) };
    parentPort.postMessage({ ok: false, error: {
      message: typeof e.message === 'string' ? e.message : String(err),
      code: typeof e.code === 'string' ? e.code : undefined,
      position: typeof e.position === 'number' ? e.position : undefined,
      token: typeof e.token === 'string' ? e.token : undefined,
    } });
  }
});
`;

export function createExpressionWorkers(o: ExpressionWorkersOptions): ExpressionWorkers {
  const size = Math.max(1, Math.floor(o.size));
  const jsonataPath = createRequire(import.meta.url).resolve('jsonata');
  const slots: Slot[] = Array.from({ length: size }, () => ({ worker: undefined, task: undefined, timer: undefined }));
  const waiting: Task[] = [];
  let closed = false;

  const spawn = (slot: Slot): Worker => {
    const worker = new Worker(CODE, {
      eval: true,
      workerData: { jsonata: jsonataPath, cacheSize: WORKER_CACHE },
    });
    worker.on('message', (answer: Answer) => {
      const task = slot.task;
      if (slot.worker !== worker || task === undefined) return;
      finish(slot);
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

  /** The slot's evaluation is over: free it and start the next waiting one. */
  const finish = (slot: Slot): void => {
    clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.task = undefined;
    slot.worker?.unref();
    const next = takeNext();
    if (next !== undefined) run(slot, next);
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

  const run = (slot: Slot, task: Task): void => {
    slot.task = task;
    const worker = (slot.worker ??= spawn(slot));
    worker.ref(); // an evaluation under way keeps the process up, as one on the main thread would
    const { timeoutMs, stack } = task.limits;
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
    try {
      worker.postMessage({ source: task.source, timeoutMs, stack, input: task.input });
    } catch (err) {
      // An input that cannot be cloned (not plain data): evaluated nowhere, a clear failure.
      finish(slot);
      task.reject(new ExpressionError(`JSONata evaluation failed: its input cannot be sent to the expression worker (${(err as Error).message})`));
    }
  };

  return {
    evaluate(source, limits, input) {
      if (closed) return Promise.reject(new ExpressionError('JSONata evaluation failed: the expression workers are closed'));
      return new Promise<unknown>((resolve, reject) => {
        const task: Task = { source, limits, input, resolve, reject };
        const idle = slots.find((s) => s.task === undefined);
        if (idle === undefined) waiting.push(task);
        else run(idle, task);
      });
    },
    async close() {
      closed = true;
      const gone = new ExpressionError('JSONata evaluation failed: the expression workers are closed');
      for (const task of waiting.splice(0)) task.reject(gone);
      await Promise.all(
        slots.map(async (slot) => {
          const { worker, task } = slot;
          slot.worker = undefined;
          clearTimeout(slot.timer);
          slot.task = undefined;
          task?.reject(gone);
          await worker?.terminate();
        }),
      );
    },
  };
}
