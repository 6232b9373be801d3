import type { Flow } from '../../core/flow.js';
import type { FlowStore } from '../contracts.js';
import type { PgDatabase } from './database.js';

export class PgFlowStore implements FlowStore {
  constructor(private readonly db: PgDatabase) {}

  async list(): Promise<Flow[]> {
    const { rows } = await this.db.query<{ doc: string }>(`SELECT doc FROM ${this.db.t.flows} ORDER BY id`);
    return rows.map((r) => JSON.parse(r.doc) as Flow);
  }

  async get(id: string): Promise<Flow | undefined> {
    const { rows } = await this.db.query<{ doc: string }>(`SELECT doc FROM ${this.db.t.flows} WHERE id = $1`, [id]);
    const row = rows[0];
    return row === undefined ? undefined : (JSON.parse(row.doc) as Flow);
  }

  async put(flow: Flow): Promise<void> {
    await this.db.query(
      `INSERT INTO ${this.db.t.flows} (id, doc) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc`,
      [flow.id, JSON.stringify(flow)],
    );
  }

  async delete(id: string): Promise<boolean> {
    const { rowCount } = await this.db.query(`DELETE FROM ${this.db.t.flows} WHERE id = $1`, [id]);
    return (rowCount ?? 0) > 0;
  }
}
