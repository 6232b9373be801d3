import type { FlowHolds, FlowOwners } from '../backend.js';
import { NOW_MS, type PgDatabase } from './database.js';
import { newId } from './ids.js';

/**
 * Which instance holds each flow with a concurrency limit (table `flow_owners`, RabbitMQ mode), and
 * which instances take part (table `flow_holders`): one statement records this instance as a
 * holder, takes flows nobody holds or whose holder's lease ran out while it holds fewer than its
 * share, renews this instance's, and gives up those it held and no longer asks for. Times are on
 * the database clock.
 */
export class PgFlowOwners implements FlowOwners {
  readonly owner = `owner-${newId()}`;

  constructor(
    private readonly db: PgDatabase,
    readonly leaseMs: number,
  ) {}

  async hold(flowIds: readonly string[], shareOf: number): Promise<FlowHolds> {
    const { flowOwners: o, flowHolders: h } = this.db.t;
    // Data-modifying CTEs do not see each other's writes: `live` counts the other holders and adds
    // this one. The DELETEs never touch a row another part writes: released removes rows of flows
    // this owner no longer asks for (its own, and any whose hold lapsed long ago: a deleted flow
    // whose holder died); forgotten removes holders gone long ago, never this one. Free flows are
    // chosen in an order of their own per owner, so that instances asking at once rarely race for
    // the same flow, and written in the flows' order, so that two such statements never wait on
    // each other's rows in opposite orders (a deadlock).
    const { rows } = await this.db.query<{ holders: number; held: string[] }>(
      `WITH me AS (
         INSERT INTO ${h} (owner, lease_until) VALUES ($1, ${NOW_MS} + $3::float8)
         ON CONFLICT (owner) DO UPDATE SET lease_until = excluded.lease_until
       ),
       forgotten AS (
         DELETE FROM ${h} WHERE owner <> $1 AND lease_until < ${NOW_MS} - 10 * $3::float8
       ),
       live AS (
         SELECT 1 + count(*)::int AS n FROM ${h} WHERE owner <> $1 AND lease_until >= ${NOW_MS}
       ),
       released AS (
         DELETE FROM ${o} WHERE NOT (flow_id = ANY($2::text[]))
           AND (owner = $1 OR lease_until < ${NOW_MS} - 10 * $3::float8)
       ),
       mine AS (
         SELECT flow_id FROM ${o} WHERE owner = $1 AND flow_id = ANY($2::text[])
       ),
       free AS (
         SELECT f FROM unnest($2::text[]) AS f
         WHERE NOT EXISTS (SELECT 1 FROM ${o} x WHERE x.flow_id = f AND (x.owner = $1 OR x.lease_until >= ${NOW_MS}))
         ORDER BY md5(f || $1)
         LIMIT greatest(0, ceil($4::float8 / (SELECT n FROM live))::int - (SELECT count(*) FROM mine))
       ),
       held AS (
         INSERT INTO ${o} AS x (flow_id, owner, lease_until)
         SELECT t.flow_id, $1, ${NOW_MS} + $3::float8 FROM (SELECT flow_id FROM mine UNION ALL SELECT f FROM free) AS t
         ORDER BY t.flow_id
         ON CONFLICT (flow_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
           WHERE x.owner = excluded.owner OR x.lease_until < ${NOW_MS}
         RETURNING x.flow_id
       )
       SELECT (SELECT n FROM live) AS holders, coalesce((SELECT array_agg(flow_id) FROM held), '{}') AS held`,
      [this.owner, flowIds, this.leaseMs, shareOf],
      'hookd_flow_owners_hold',
    );
    const row = rows[0]!;
    return { held: new Set(row.held), holders: row.holders };
  }

  async releaseAll(): Promise<void> {
    await this.db.query(
      `WITH released AS (DELETE FROM ${this.db.t.flowOwners} WHERE owner = $1)
       DELETE FROM ${this.db.t.flowHolders} WHERE owner = $1`,
      [this.owner],
    );
  }
}
