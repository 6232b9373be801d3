import type { Flow } from '../core/flow.js';
import type { FlowStore } from './contracts.js';

/**
 * The flows this process serves, kept in memory so the ingress resolves a flow id with a map lookup
 * (same cost for an unknown and a stopped flow) and the runner without a read. Writes go through
 * here so the cache and the store never disagree in this process.
 */
export class FlowRegistry {
  private readonly flows = new Map<string, Flow>();

  constructor(private readonly store: FlowStore) {}

  async load(): Promise<void> {
    const all = await this.store.list();
    this.flows.clear();
    for (const f of all) this.flows.set(f.id, f);
  }

  get(id: string): Flow | undefined {
    return this.flows.get(id);
  }

  /** The flow when it exists and is started; undefined otherwise (callers must not tell which). */
  active(id: string): Flow | undefined {
    const flow = this.flows.get(id);
    return flow !== undefined && flow.status === 'started' ? flow : undefined;
  }

  list(): Flow[] {
    return [...this.flows.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  async put(flow: Flow): Promise<void> {
    await this.store.put(flow);
    this.flows.set(flow.id, flow);
  }

  async delete(id: string): Promise<boolean> {
    const removed = await this.store.delete(id);
    this.flows.delete(id);
    return removed;
  }
}
