import type { InstanceCounts, InstanceRegistry } from '../backend.js';
import { NOW_MS, type PgDatabase } from './database.js';
import { newId } from './ids.js';
import { migrations } from './migrations/index.js';
import type { QueueMode } from './queue-mode.js';

/** The highest schema version this build knows, recorded with each beat. */
const SCHEMA_VERSION = Math.max(...migrations.map((m) => m.version));

/**
 * The hookd processes sharing this database (table `instances`): each one records itself every few
 * seconds; rows not seen for `expireMs` are dropped. One statement per beat. Times are on the
 * database clock, so instances with skewed clocks agree.
 */
export class PgInstances implements InstanceRegistry {
  readonly id = `instance-${newId()}`;
  /** Since when this process's beats have gone through without a break (monotonic ms); undefined after a failed one. */
  private steadySince: number | undefined;
  private lastBeat = 0;

  /** `queue`: the queue this instance uses, recorded with its beats (queue-mode.ts). */
  constructor(
    private readonly db: PgDatabase,
    private readonly queue?: QueueMode,
  ) {}

  /**
   * Whether this process's beats have gone through without a break for at least `ms`: only then
   * may it take an instance that has not beaten for that long as gone (QueueSql's
   * InstanceJudgement). A failed beat, or a pause of more than half of `ms` between beats (a
   * stalled process), starts the count again: after an outage of the database, every instance
   * looks gone to the first one back until the others have beaten again.
   */
  steadyFor(ms: number): boolean {
    const now = performance.now();
    return this.steadySince !== undefined && now - this.steadySince >= ms && now - this.lastBeat <= ms / 2;
  }

  async beat(expireMs: number, runsFlows = true): Promise<InstanceCounts> {
    try {
      // Not steady (just started, or back from an outage): the others may simply not have beaten
      // again yet. Count them all and forget none, rather than take a share meant for fewer.
      const counts = await this.record(this.steadyFor(expireMs) ? expireMs : Number.MAX_SAFE_INTEGER, runsFlows);
      const now = performance.now();
      if (this.steadySince === undefined || now - this.lastBeat > expireMs / 2) this.steadySince = now;
      this.lastBeat = now;
      return counts;
    } catch (err) {
      this.steadySince = undefined;
      throw err;
    }
  }

  private async record(expireMs: number, runsFlows: boolean): Promise<InstanceCounts> {
    // The CTEs' writes are not visible to the final SELECT (same snapshot): it counts the others.
    const { rows } = await this.db.query<{ others: number; others_running: number }>(
      `WITH me AS (
         INSERT INTO ${this.db.t.instances} (id, seen_at, runs_flows, queue, schema_version) VALUES ($1, ${NOW_MS}, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, runs_flows = excluded.runs_flows, queue = excluded.queue, schema_version = excluded.schema_version
       ), gone AS (
         DELETE FROM ${this.db.t.instances} WHERE seen_at < ${NOW_MS} - $2::float8 AND id <> $1
       )
       SELECT count(*)::integer AS others, (count(*) FILTER (WHERE runs_flows))::integer AS others_running
       FROM ${this.db.t.instances} WHERE id <> $1 AND seen_at >= ${NOW_MS} - $2::float8`,
      [this.id, expireMs, runsFlows, this.queue ?? null, SCHEMA_VERSION],
      'hookd_instances_beat',
    );
    const r = rows[0];
    return { live: (r?.others ?? 0) + 1, runningFlows: (r?.others_running ?? 0) + (runsFlows ? 1 : 0) };
  }

  async earlier(expireMs: number): Promise<number> {
    const { rows } = await this.db.query<{ n: number }>(
      `SELECT count(*)::integer AS n FROM ${this.db.t.instances}
       WHERE id <> $1 AND seen_at >= ${NOW_MS} - $2::float8 AND (schema_version IS NULL OR schema_version < $3)`,
      [this.id, expireMs, SCHEMA_VERSION],
    );
    return rows[0]?.n ?? 0;
  }

  async leave(): Promise<void> {
    await this.db.query(`DELETE FROM ${this.db.t.instances} WHERE id = $1`, [this.id]);
  }
}
