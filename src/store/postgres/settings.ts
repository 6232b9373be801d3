import type { SharedSettings } from '../backend.js';
import type { PgDatabase } from './database.js';

/** Shared settings in the `settings` table (migration 0005): the first value stored for a key wins. */
export class PgSettings implements SharedSettings {
  constructor(private readonly db: PgDatabase) {}

  async get(key: string): Promise<string | undefined> {
    const { rows } = await this.db.query<{ value: string }>(`SELECT value FROM ${this.db.t.settings} WHERE key = $1`, [key], 'hookd_settings_get');
    return rows[0]?.value;
  }

  async getOrSet(key: string, value: string): Promise<string> {
    // Two tries: a row committed by another instance after this statement's snapshot was taken
    // makes ON CONFLICT skip the insert while the SELECT cannot see it yet; the next statement can.
    for (let attempt = 0; attempt < 2; attempt++) {
      const { rows } = await this.db.query<{ value: string }>(
        `WITH ins AS (
           INSERT INTO ${this.db.t.settings} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING value
         )
         SELECT value FROM ins UNION ALL SELECT value FROM ${this.db.t.settings} WHERE key = $1`,
        [key, value],
        'hookd_settings_get_or_set',
      );
      const stored = rows[0]?.value;
      if (stored !== undefined) return stored;
    }
    throw new Error(`settings: no value for ${key} after inserting one`);
  }
}
