import type { InstanceRegistry } from '../backend.js';
import { NOW_MS, type PgDatabase } from './database.js';
import { newId } from './ids.js';

/**
 * The hookd processes sharing this database (table `instances`): each one records itself every few
 * seconds; rows not seen for `expireMs` are dropped. One statement per beat. Times are on the
 * database clock, so instances with skewed clocks agree.
 */
export class PgInstances implements InstanceRegistry {
  readonly id = `instance-${newId()}`;

  constructor(private readonly db: PgDatabase) {}

  async beat(expireMs: number): Promise<number> {
    // The CTEs' writes are not visible to the final SELECT (same snapshot): it counts the others.
    const { rows } = await this.db.query<{ others: number }>(
      `WITH me AS (
         INSERT INTO ${this.db.t.instances} (id, seen_at) VALUES ($1, ${NOW_MS})
         ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at
       ), gone AS (
         DELETE FROM ${this.db.t.instances} WHERE seen_at < ${NOW_MS} - $2::float8 AND id <> $1
       )
       SELECT count(*)::integer AS others FROM ${this.db.t.instances} WHERE id <> $1 AND seen_at >= ${NOW_MS} - $2::float8`,
      [this.id, expireMs],
      'hookd_instances_beat',
    );
    return (rows[0]?.others ?? 0) + 1;
  }

  async leave(): Promise<void> {
    await this.db.query(`DELETE FROM ${this.db.t.instances} WHERE id = $1`, [this.id]);
  }
}
