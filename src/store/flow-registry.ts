import type { ExecutionRateDef, Flow } from '../core/flow.js';
import type { FlowStore, PutExpectation } from './contracts.js';

/**
 * The flows this process serves, kept in memory so the ingress resolves a flow id with a map lookup
 * (same cost for an unknown and a stopped flow) and the runner without a read. Writes go through
 * here so the cache and the store never disagree in this process.
 */
export interface SecretCodec {
  seal(flow: Flow): Flow;
  open(flow: Flow): Flow;
}

const plain: SecretCodec = { seal: (f) => f, open: (f) => f };

/**
 * A stored flow whose credential secrets do not open (sealed under another HOOKD_SECRET_KEY):
 * left out of what is served; a replacement with its secrets given again may be written over it
 * (`updatedAt`: the stored version, for the write's expectation).
 */
export class UnreadableFlowError extends Error {
  constructor(
    readonly flowId: string,
    readonly updatedAt: string,
    cause: unknown,
  ) {
    super(`flow ${flowId}: its credential secrets do not open with this HOOKD_SECRET_KEY`, { cause });
    this.name = 'UnreadableFlowError';
  }
}

export class FlowRegistry {
  private readonly flows = new Map<string, Flow>();
  /** Called after every change of what is held (loads included): the queue follows the flows. */
  onChange: (() => void) | undefined;
  /** Flows with a `concurrency`, built again after a change (concurrencyLimits()). */
  private limits: ReadonlyMap<string, number> | undefined;
  /** Flows with an `executionRate`, built again after a change (executionRates()). */
  private rates: ReadonlyMap<string, ExecutionRateDef> | undefined;
  /** Flows left out because their secrets do not open, by the stored version (updatedAt) reported. */
  private readonly unreadable = new Map<string, string>();

  /** `codec` seals credential secrets on the way to the store and opens them on the way back. */
  constructor(
    private readonly store: FlowStore,
    private readonly codec: SecretCodec = plain,
  ) {}

  /**
   * (Re)read every flow. Unchanged flows keep their object (compiled expressions and allowlists are
   * cached per object); a flow whose secrets cannot be opened (another master key) is left out
   * and reported — once per stored version, not at every load (a refresh every 2 s) while it
   * stays so — so one bad row never takes the others down.
   */
  async load(onError?: (flowId: string, err: unknown) => void): Promise<void> {
    const all = await this.store.list();
    const next = new Map<string, Flow>();
    const present = new Set<string>();
    for (const stored of all) {
      present.add(stored.id);
      const known = this.flows.get(stored.id);
      if (known !== undefined && known.updatedAt === stored.updatedAt) {
        next.set(stored.id, known);
        continue;
      }
      try {
        next.set(stored.id, this.codec.open(stored));
        this.unreadable.delete(stored.id);
      } catch (err) {
        if (this.unreadable.get(stored.id) !== stored.updatedAt) onError?.(stored.id, err);
        this.unreadable.set(stored.id, stored.updatedAt);
      }
    }
    for (const id of this.unreadable.keys()) if (!present.has(id)) this.unreadable.delete(id);
    this.flows.clear();
    for (const [id, f] of next) this.flows.set(id, f);
    this.changed();
  }

  /**
   * A flow as the store has it now (another instance may have changed it since the last refresh),
   * remembered as such: also forgotten here when it is gone. Throws UnreadableFlowError for a
   * flow whose secrets do not open.
   */
  async fetch(id: string): Promise<Flow | undefined> {
    const stored = await this.store.get(id);
    if (stored === undefined) {
      if (this.flows.delete(id)) this.changed();
      return undefined;
    }
    // Unchanged: keep the object (compiled steps, allowlists and rate limits are cached per object).
    const known = this.flows.get(id);
    if (known !== undefined && known.updatedAt === stored.updatedAt) return known;
    let flow: Flow;
    try {
      flow = this.codec.open(stored);
    } catch (err) {
      throw new UnreadableFlowError(id, stored.updatedAt, err);
    }
    this.flows.set(id, flow);
    this.changed();
    return flow;
  }

  private changed(): void {
    this.limits = undefined;
    this.rates = undefined;
    this.onChange?.();
  }

  /**
   * The flows that limit their executions at once (`concurrency`), by id: the queues' consumers
   * hold to them. A stopped flow is there with 0: the database queues leave its jobs where they
   * are, claiming none (each would only be put back, again and again, until it is started).
   */
  concurrencyLimits(): ReadonlyMap<string, number> {
    if (this.limits === undefined) {
      const limits = new Map<string, number>();
      for (const f of this.flows.values()) {
        if (f.status === 'stopped') limits.set(f.id, 0);
        else if (f.concurrency !== undefined) limits.set(f.id, f.concurrency);
      }
      this.limits = limits;
    }
    return this.limits;
  }

  /** The flows that limit their executions per second (`executionRate`), by id; stopped ones too. */
  executionRates(): ReadonlyMap<string, ExecutionRateDef> {
    if (this.rates === undefined) {
      const rates = new Map<string, ExecutionRateDef>();
      for (const f of this.flows.values()) if (f.executionRate !== undefined) rates.set(f.id, f.executionRate);
      this.rates = rates;
    }
    return this.rates;
  }

  get(id: string): Flow | undefined {
    return this.flows.get(id);
  }

  /** The flow when it exists and is started; undefined otherwise (callers must not tell which). */
  active(id: string): Flow | undefined {
    const flow = this.flows.get(id);
    return flow !== undefined && flow.status === 'started' ? flow : undefined;
  }

  /** Every flow held, in no order. */
  values(): IterableIterator<Flow> {
    return this.flows.values();
  }

  list(): Flow[] {
    return [...this.flows.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** The store's put(); false (nothing changed) when `expect` did not hold. */
  async put(flow: Flow, expect?: PutExpectation): Promise<boolean> {
    if (!(await this.store.put(this.codec.seal(flow), expect))) return false;
    this.flows.set(flow.id, flow);
    this.changed();
    return true;
  }

  async delete(id: string): Promise<boolean> {
    const removed = await this.store.delete(id);
    this.flows.delete(id);
    this.changed();
    return removed;
  }
}
