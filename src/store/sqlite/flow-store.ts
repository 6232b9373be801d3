import type { Flow } from '../../core/flow.js';
import type { FlowDeletion, FlowStore } from '../contracts.js';
import type { Reader } from './reader.js';
import type { WriterClient } from './writer/writer-client.js';

export class SqliteFlowStore implements FlowStore {
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

  async put(flow: Flow): Promise<void> {
    await this.writer.call('putFlow', { id: flow.id, doc: JSON.stringify(flow) });
  }

  delete(id: string): Promise<boolean> {
    return this.writer.call('deleteFlow', { id, deletedAt: Date.now() });
  }

  async deletions(): Promise<FlowDeletion[]> {
    const rows = this.reader.read(
      'SELECT flow_id AS id, deleted_at AS deletedAt FROM flow_deletions ORDER BY deleted_at, flow_id',
      (s) => s.all() as FlowDeletion[],
    );
    return rows;
  }

  forgetDeletion(id: string, deletedAt: number): Promise<boolean> {
    return this.writer.call('forgetFlowDeletion', { id, deletedAt });
  }
}
