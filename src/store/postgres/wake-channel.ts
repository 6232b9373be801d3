import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';
import { RecurringFailure } from '../../core/repeated-log.js';
import { quoteIdent, type PgDatabase } from './database.js';

const RECONNECT_MS = 1_000;

/** NOTIFY channel of a schema's queue (channel names are identifiers: at most 63 bytes). */
export function channelName(schema: string): string {
  const name = `hookd_jobs_${schema}`;
  return name.length <= 63 ? name : `hookd_jobs_${createHash('sha256').update(schema).digest('hex').slice(0, 32)}`;
}

/**
 * Cross-process wake-up of the PostgreSQL queue: LISTEN on a dedicated connection, NOTIFY from any.
 *
 * poke() is sent after the commit, in its own tiny transaction, never inside the accept batch: a
 * transaction that NOTIFYs takes a database-wide lock from pre-commit until its commit is flushed,
 * which would serialise the WAL flushes of every instance's batches. The notify-only transaction
 * writes no data, so it commits with synchronous_commit off (set LOCAL to it alone) and costs no
 * flush. Pokes are coalesced: at most one in flight, plus one more if asked meanwhile. The payload
 * is this instance's id, so its own pokes do not wake it twice (it woke its consumers directly).
 *
 * Notifications are a hint, not a guarantee (a lost LISTEN connection misses some): the queue also
 * sweeps on a timer.
 */
export class WakeChannel {
  readonly channel: string;
  readonly instance = randomUUID();
  private client: pg.Client | undefined;
  private wanted = false;
  private closed = false;
  private sending = false;
  private again = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** Lost and reconnecting every RECONNECT_MS while the database is down: one line, summed up, then 'listening again'. */
  private lost: RecurringFailure | undefined;

  constructor(
    private readonly db: PgDatabase,
    private readonly onWake: () => void,
  ) {
    this.channel = channelName(db.schema);
  }

  /** Tell other processes that jobs became due. Fire and forget. */
  poke(): void {
    if (this.closed) return;
    if (this.sending) {
      this.again = true;
      return;
    }
    this.sending = true;
    this.db
      .query(
        "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)",
        [this.channel, this.instance],
        'hookd_notify',
      )
      .catch((err: unknown) => {
        if (!this.closed) this.db.logger.warn({ err }, 'postgres queue: NOTIFY failed');
      })
      .finally(() => {
        this.sending = false;
        if (this.again) {
          this.again = false;
          this.poke();
        }
      });
  }

  /** Start listening (idempotent); reconnects on its own until close(). */
  listen(): void {
    if (this.wanted || this.closed) return;
    this.wanted = true;
    void this.connect(false);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }

  private async connect(isReconnect: boolean): Promise<void> {
    if (this.closed) return;
    // No statement or query timeout: this connection only waits.
    const client = new pg.Client({ ...this.db.clientConfig, statement_timeout: 0, query_timeout: 0 });
    let failed = false;
    const lost = (err?: unknown): void => {
      if (failed) return;
      failed = true;
      if (this.client === client) this.client = undefined;
      client.end().catch(() => {});
      if (this.closed) return;
      this.lost ??= new RecurringFailure(this.db.logger, 'postgres queue: LISTEN connection lost; reconnecting (jobs of other instances are found by the sweep meanwhile)', 'postgres queue: LISTEN connection back');
      if (err) this.lost.failed({ err });
      this.reconnectTimer = setTimeout(() => void this.connect(true), RECONNECT_MS);
      this.reconnectTimer.unref();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', (n) => {
      if (n.channel === this.channel && n.payload !== this.instance) this.onWake();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${quoteIdent(this.channel)}`);
    } catch (err) {
      lost(err);
      return;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.lost?.succeeded();
    // Pokes sent while no connection listened were missed.
    if (isReconnect) this.onWake();
  }
}
