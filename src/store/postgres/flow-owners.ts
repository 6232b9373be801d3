import type { FlowOwners } from '../backend.js';
import { NOW_MS, type PgDatabase } from './database.js';
import { newId } from './ids.js';

/**
 * Which instance holds each flow with a concurrency limit (table `flow_owners`, RabbitMQ mode): one
 * statement takes the flows nobody holds or whose holder's lease ran out, renews this instance's,
 * and gives up those it held and no longer asks for. Times are on the database clock.
 */
export class PgFlowOwners implements FlowOwners {
  readonly owner = `owner-${newId()}`;

  constructor(
    private readonly db: PgDatabase,
    readonly leaseMs: number,
  ) {}

  async hold(flowIds: readonly string[]): Promise<ReadonlySet<string>> {
    const t = this.db.t.flowOwners;
    // The DELETE removes rows of flows this owner no longer asks for (never a row the INSERT
    // touches): its own, and any whose hold lapsed long ago (a deleted flow whose holder died).
    const { rows } = await this.db.query<{ flow_id: string }>(
      `WITH released AS (
         DELETE FROM ${t} WHERE NOT (flow_id = ANY($2::text[]))
           AND (owner = $1 OR lease_until < ${NOW_MS} - 10 * $3::float8)
       )
       INSERT INTO ${t} AS o (flow_id, owner, lease_until)
       SELECT f, $1, ${NOW_MS} + $3::float8 FROM unnest($2::text[]) AS f
       ON CONFLICT (flow_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
         WHERE o.owner = excluded.owner OR o.lease_until < ${NOW_MS}
       RETURNING o.flow_id`,
      [this.owner, flowIds, this.leaseMs],
      'hookd_flow_owners_hold',
    );
    return new Set(rows.map((r) => r.flow_id));
  }

  async releaseAll(): Promise<void> {
    await this.db.query(`DELETE FROM ${this.db.t.flowOwners} WHERE owner = $1`, [this.owner]);
  }
}
