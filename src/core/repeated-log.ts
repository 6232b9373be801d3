/** The slice of a logger RepeatedLog writes to (pino.Logger has it). */
export interface LevelLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

type Level = 'info' | 'warn' | 'error';

interface Window {
  level: Level;
  msg: string;
  /** Further occurrences since the line last written. */
  repeated: number;
  last: object;
  /** When the window began (its first line, or the previous summary). */
  openedAt: number;
  timer: NodeJS.Timeout;
}

/** How long one kind of line is summarised before a line says how many more there were. */
export const REPEAT_WINDOW_MS = 10_000;
/** Kinds tracked at once; beyond, lines are written as they come (no kind is ever silenced). */
const MAX_KINDS = 1_000;

/**
 * Lines of one kind (a key: a flow's step failing, a code answered 503, a sender refused) that can
 * come once per request or retry while a failure lasts — a receiver down, the database unreachable,
 * a sender with a wrong secret. The first is written as it comes; the next ones within the window
 * are counted, and at the end of the window (or at close) one line (the last one's fields,
 * `repeated: n`, `windowMs`: how long it counted) says how many there were. While the failure lasts that is one line per kind per
 * window, not one per request; the count of every occurrence is in the metrics, each request's
 * error in its execution record.
 */
export class RepeatedLog {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly logger: LevelLogger,
    private readonly windowMs = REPEAT_WINDOW_MS,
  ) {}

  info(key: string, obj: object, msg: string): void {
    this.write('info', key, obj, msg);
  }

  warn(key: string, obj: object, msg: string): void {
    this.write('warn', key, obj, msg);
  }

  error(key: string, obj: object, msg: string): void {
    this.write('error', key, obj, msg);
  }

  /** Writes the counts still pending (at shutdown) and forgets every window. */
  flush(): void {
    for (const [key, w] of this.windows) {
      clearTimeout(w.timer);
      this.windows.delete(key);
      if (w.repeated > 0) this.summary(w);
    }
  }

  private write(level: Level, key: string, obj: object, msg: string): void {
    const w = this.windows.get(key);
    if (w !== undefined) {
      w.repeated++;
      w.last = obj;
      return;
    }
    this.logger[level](obj, msg);
    if (this.windows.size >= MAX_KINDS) return;
    this.open(key, level, msg, obj);
  }

  private open(key: string, level: Level, msg: string, last: object): void {
    const timer = setTimeout(() => {
      const w = this.windows.get(key);
      if (w === undefined) return;
      this.windows.delete(key);
      if (w.repeated === 0) return;
      this.summary(w);
      // Still happening: the next window summarises again, without a line of its own first.
      this.open(key, w.level, w.msg, w.last);
    }, this.windowMs);
    timer.unref();
    this.windows.set(key, { level, msg, repeated: 0, last, openedAt: Date.now(), timer });
  }

  /** The count since the window began (shorter than windowMs when flushed at close). */
  private summary(w: Window): void {
    const ms = Math.max(0, Date.now() - w.openedAt);
    this.logger[w.level]({ ...w.last, repeated: w.repeated, windowMs: ms }, `${w.msg} (${w.repeated} more like it in the last ${Math.round(ms / 100) / 10} s; the last one's fields shown)`);
  }
}

/**
 * A background pass that fails at every turn while a dependency is down (the flow refresh, the
 * instance beat, a queue sweep, a claim): the first failure is logged as it comes, further ones
 * summed up per window (RepeatedLog), and the first success after them says so — after how long
 * and how many failures — so the log shows when the outage ended, not only when it began.
 */
export class RecurringFailure {
  private readonly repeated: RepeatedLog;
  private since: number | undefined;
  private failures = 0;

  constructor(
    private readonly logger: LevelLogger,
    private readonly failedMsg: string,
    private readonly recoveredMsg: string,
    windowMs = REPEAT_WINDOW_MS,
  ) {
    this.repeated = new RepeatedLog(logger, windowMs);
  }

  failed(obj: object): void {
    this.since ??= Date.now();
    this.failures++;
    this.repeated.warn('', obj, this.failedMsg);
  }

  succeeded(): void {
    if (this.since === undefined) return;
    this.repeated.flush();
    this.logger.info({ failures: this.failures, failingForMs: Date.now() - this.since }, this.recoveredMsg);
    this.since = undefined;
    this.failures = 0;
  }
}
