/** The result of one item of a batch. */
export type Outcome<R> = { ok: true; value: R } | { ok: false; error: unknown };

export interface GroupCommitOptions {
  /** Items per batch at most. */
  maxItems: number;
  /** Payload bytes per batch at most; an item larger than this goes alone. */
  maxBytes: number;
  /**
   * Batches in flight at once. 1: while a batch commits, the next one forms from everything that
   * arrives meanwhile, which is what makes batches grow with load.
   */
  maxInflight: number;
  /**
   * Bound on what waits for a batch (not counting batches in flight): past it, submit() rejects at
   * once with `overloaded()`. Without it, a database that hangs (a partition, a stalled server:
   * each batch takes its full timeout to fail) lets the waiting items, and whatever they hold,
   * grow without limit.
   */
  maxQueued?: { items: number; bytes: number; overloaded(): unknown };
}

interface Pending<I, R> {
  item: I;
  key: string;
  bytes: number;
  resolve(value: R): void;
  reject(err: unknown): void;
}

/**
 * Group commit: items submitted in one event-loop turn, or while the previous batch is in flight,
 * are handed to `run` together (one statement, one transaction, one WAL flush). Each submitter
 * resolves with its own item's outcome once `run` has resolved, i.e. after the batch's COMMIT; if
 * `run` rejects, every item of the batch rejects with that error. Items with the same key never
 * share a batch (the later one waits for the next), so `run` may assume distinct keys, and with
 * several batches in flight an item waits while its key is in one of them, so the writes of one
 * key commit in the order they were submitted.
 */
export class GroupCommit<I, R> {
  private queue: Array<Pending<I, R>> = [];
  private queuedBytes = 0;
  private inflight = 0;
  /**
   * Keys of the items in the batches in flight: an item with one of them waits. Only with
   * maxInflight > 1: with one batch at a time, none is in flight when the next is taken.
   */
  private readonly inflightKeys: Set<string> | undefined;
  private scheduled = false;
  private idle: Array<() => void> = [];
  private readonly flushNow = (): void => this.flush();
  /** Batches run and items they carried (metrics, tests). */
  readonly counters = { batches: 0, items: 0 };

  constructor(
    private readonly run: (items: readonly I[]) => Promise<Array<Outcome<R>>>,
    private readonly opts: GroupCommitOptions,
  ) {
    this.inflightKeys = opts.maxInflight > 1 ? new Set() : undefined;
  }

  submit(item: I, key: string, bytes: number): Promise<R> {
    const bound = this.opts.maxQueued;
    if (bound !== undefined && this.queue.length > 0 && (this.queue.length >= bound.items || this.queuedBytes + bytes > bound.bytes)) {
      return Promise.reject(bound.overloaded());
    }
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, key, bytes, resolve, reject });
      this.queuedBytes += bytes;
      if (!this.scheduled && this.inflight < this.opts.maxInflight) {
        this.scheduled = true;
        setImmediate(this.flushNow);
      }
    });
  }

  /** Resolves once nothing is queued or in flight. */
  drain(): Promise<void> {
    if (this.queue.length === 0 && this.inflight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.idle.push(resolve));
  }

  private flush(): void {
    this.scheduled = false;
    while (this.queue.length > 0 && this.inflight < this.opts.maxInflight) {
      const batch = this.take();
      if (batch.length === 0) break; // every item waits for a key in flight
      this.start(batch);
    }
  }

  private take(): Array<Pending<I, R>> {
    const batch: Array<Pending<I, R>> = [];
    const keys = new Set<string>();
    const rest: Array<Pending<I, R>> = [];
    let bytes = 0;
    for (const p of this.queue) {
      const fits =
        batch.length < this.opts.maxItems &&
        (batch.length === 0 || bytes + p.bytes <= this.opts.maxBytes) &&
        !keys.has(p.key) &&
        this.inflightKeys?.has(p.key) !== true;
      if (fits) {
        batch.push(p);
        keys.add(p.key);
        bytes += p.bytes;
      } else {
        rest.push(p);
      }
    }
    this.queue = rest;
    this.queuedBytes -= bytes;
    return batch;
  }

  private start(batch: Array<Pending<I, R>>): void {
    this.inflight++;
    if (this.inflightKeys !== undefined) for (const p of batch) this.inflightKeys.add(p.key);
    this.counters.batches++;
    this.counters.items += batch.length;
    Promise.resolve()
      .then(() => this.run(batch.map((p) => p.item)))
      .then(
        (outcomes) => {
          for (let i = 0; i < batch.length; i++) {
            const o = outcomes[i];
            const p = batch[i]!;
            if (o === undefined) p.reject(new Error('group commit: no outcome for an item'));
            else if (o.ok) p.resolve(o.value);
            else p.reject(o.error);
          }
        },
        (err: unknown) => {
          for (const p of batch) p.reject(err);
        },
      )
      .finally(() => {
        this.inflight--;
        if (this.inflightKeys !== undefined) for (const p of batch) this.inflightKeys.delete(p.key);
        if (this.queue.length > 0) this.flush();
        else if (this.inflight === 0) for (const resolve of this.idle.splice(0)) resolve();
      });
  }
}
