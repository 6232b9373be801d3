import type { Flow } from '../../core/flow.js';
import type { FlowDeletion, FlowStore, PutExpectation } from '../contracts.js';
import { NOW_MS, type PgDatabase } from './database.js';

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

  async put(flow: Flow, expect?: PutExpectation): Promise<boolean> {
    const flows = this.db.t.flows;
    const doc = JSON.stringify(flow);
    // One transaction, two statements: the second takes a snapshot of its own (READ COMMITTED), so
    // it sees a deletion record that a delete() the insert waited for has just committed, and it
    // waits for a forgetDeletion() holding the record (its queue being removed).
    return this.db.transaction(async (query) => {
      // The conditional forms lock the row they test (or the key they insert): a concurrent put of
      // the same flow waits for this one's commit, then re-checks against what it wrote.
      const { rowCount } =
        expect === undefined
          ? await query(`INSERT INTO ${flows} (id, doc) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc`, [flow.id, doc])
          : 'absent' in expect
            ? await query(`INSERT INTO ${flows} (id, doc) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, [flow.id, doc])
            : await query(`UPDATE ${flows} SET doc = $2 WHERE id = $1 AND (doc::json ->> 'updatedAt') = $3`, [flow.id, doc, expect.updatedAt]);
      if ((rowCount ?? 0) === 0) return false;
      await query(`DELETE FROM ${this.db.t.flowDeletions} WHERE flow_id = $1`, [flow.id]);
      return true;
    });
  }

  async delete(id: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `WITH gone AS (DELETE FROM ${this.db.t.flows} WHERE id = $1 RETURNING id)
       INSERT INTO ${this.db.t.flowDeletions} (flow_id, deleted_at) SELECT id, floor(${NOW_MS})::bigint FROM gone
       ON CONFLICT (flow_id) DO UPDATE SET deleted_at = excluded.deleted_at`,
      [id],
    );
    return (rowCount ?? 0) > 0;
  }

  async deletions(): Promise<FlowDeletion[]> {
    const { rows } = await this.db.query<{ flow_id: string; deleted_at: string; age_ms: number }>(
      `SELECT flow_id, deleted_at, ${NOW_MS} - deleted_at AS age_ms FROM ${this.db.t.flowDeletions} ORDER BY deleted_at, flow_id`,
    );
    return rows.map((r) => ({ id: r.flow_id, deletedAt: Number(r.deleted_at), ageMs: Math.max(0, Math.floor(Number(r.age_ms))) }));
  }

  async forgetDeletion(id: string, deletedAt: number, cleanUp?: (stillHeld: () => Promise<void>) => Promise<boolean>): Promise<boolean> {
    return this.db.transaction(async (query) => {
      // The broker's calls run inside this transaction: a shorter server-side idle timeout must
      // not end it, and a longer one (or none) must not keep the lock for hours after this
      // instance is gone (a frozen VM, a partition).
      await query("SET LOCAL idle_in_transaction_session_timeout = '5min'");
      // Held (FOR UPDATE) while cleanUp runs: put() of this id deletes the record, so it waits.
      // SKIP LOCKED: another instance cleaning it up right now is left to it.
      const { rowCount } = await query(
        `SELECT 1 FROM ${this.db.t.flowDeletions} WHERE flow_id = $1 AND deleted_at = $2 FOR UPDATE SKIP LOCKED`,
        [id, deletedAt],
      );
      if ((rowCount ?? 0) === 0) return false;
      // A statement on the transaction's connection: fails when that connection (and the lock) is gone.
      const stillHeld = async (): Promise<void> => {
        await query('SELECT 1');
      };
      if (cleanUp && !(await cleanUp(stillHeld))) return false;
      await query(`DELETE FROM ${this.db.t.flowDeletions} WHERE flow_id = $1 AND deleted_at = $2`, [id, deletedAt]);
      return true;
    });
  }
}
