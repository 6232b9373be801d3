import type { Flow } from '../../core/flow.js';
import type { FlowDeletion, FlowStore, PutExpectation } from '../contracts.js';
import { KeyedLock } from './keyed-lock.js';
import type { Reader } from './reader.js';
import type { WriterClient } from './writer/writer-client.js';

export class SqliteFlowStore implements FlowStore {
  /** put() and forgetDeletion() of one flow id, one after the other (one process holds the file). */
  private readonly byId = new KeyedLock();

  constructor(
    private readonly writer: WriterClient,
    private readonly reader: Reader,
  ) {}

  async list(): Promise<Flow[]> {
    const docs = this.reader.read('SELECT doc FROM flows ORDER BY id', (s) => s.pluck().all() as string[]);
    return docs.map((d) => JSON.parse(d) as Flow);
  }

  async get(id: string): Promise<Flow | undefined> {
    const doc = this.reader.read('SELECT doc FROM flows WHERE id = ?', (s) => s.pluck().get(id) as string | undefined);
    return doc === undefined ? undefined : (JSON.parse(doc) as Flow);
  }

  put(flow: Flow, expect?: PutExpectation): Promise<boolean> {
    const condition = expect === undefined ? {} : { expect: 'absent' in expect ? (true as const) : expect.updatedAt };
    return this.byId.run(flow.id, () => this.writer.call('putFlow', { id: flow.id, doc: JSON.stringify(flow), ...condition }));
  }

  delete(id: string): Promise<boolean> {
    return this.writer.call('deleteFlow', { id, deletedAt: Date.now() });
  }

  async deletions(): Promise<FlowDeletion[]> {
    const rows = this.reader.read(
      'SELECT flow_id AS id, deleted_at AS deletedAt FROM flow_deletions ORDER BY deleted_at, flow_id',
      (s) => s.all() as Array<{ id: string; deletedAt: number }>,
    );
    const now = Date.now();
    return rows.map((r) => ({ ...r, ageMs: Math.max(0, now - r.deletedAt) }));
  }

  forgetDeletion(id: string, deletedAt: number, cleanUp?: (stillHeld: () => Promise<void>) => Promise<boolean>): Promise<boolean> {
    // The op deletes only that record: without a clean-up, nothing to hold.
    if (cleanUp === undefined) return this.writer.call('forgetFlowDeletion', { id, deletedAt });
    return this.byId.run(id, async () => {
      const held = this.reader.read('SELECT 1 FROM flow_deletions WHERE flow_id = ? AND deleted_at = ?', (s) => s.pluck().get(id, deletedAt));
      if (held === undefined) return false;
      // One process holds the file and the lock: the hold cannot be lost.
      if (!(await cleanUp(() => Promise.resolve()))) return false;
      return this.writer.call('forgetFlowDeletion', { id, deletedAt });
    });
  }
}
