import type { StepRecord } from '../../core/execution.js';
import type { RunRecord } from '../contracts.js';
import { batchOrEach } from './batch-or-each.js';
import type { PgDatabase } from './database.js';
import type { Outcome } from './group-commit.js';
import { newId } from './ids.js';

/**
 * Whole flow runs (the pure-flow fast path: one write per job) saved in ONE statement per batch:
 * upsert each request's execution as final and replace its step records. Rows are passed as arrays
 * (unnest), so the statement text is the same for every batch size and is prepared once.
 *
 * An execution already completed or filtered is left as it was (the ON CONFLICT … WHERE stops the
 * update, so it is missing from `up` and nothing else is written for it); the statement still
 * returns its id. Old steps of a re-run are deleted before the new ones go in: `ins` reads `cleared`
 * first, and rows the same statement deleted do not count as unique-key conflicts.
 *
 * The batch's request ids are distinct (the group commit keys them) and go in request_id order, so
 * two instances' batches lock executions in the same order. A statement error (bad data) fails the
 * batch, which is then retried run by run so the error stays with its run.
 */
export class SaveRuns {
  constructor(private readonly db: PgDatabase) {}

  run(records: readonly RunRecord[]): Promise<Array<Outcome<string>>> {
    return batchOrEach(records, (batch) => this.exec(batch), (r) => r.requestId);
  }

  private async exec(records: readonly RunRecord[]): Promise<Map<string, string>> {
    const runs = [...records].sort((a, b) => (a.requestId < b.requestId ? -1 : a.requestId > b.requestId ? 1 : 0));
    const run = (f: (r: RunRecord) => unknown) => runs.map(f);
    const steps: Array<{ n: number; s: StepRecord }> = [];
    runs.forEach((r, i) => {
      for (const s of r.steps) steps.push({ n: i + 1, s });
    });
    const step = <K extends keyof StepRecord>(k: K) => steps.map(({ s }) => s[k] ?? null);
    const { executions: e, steps: st } = this.db.t;
    const { rows } = await this.db.query<{ request_id: string; id: string }>(
      `WITH input AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::float8[], $7::float8[],
                              $8::float8[], $9::text[], $10::integer[])
           WITH ORDINALITY AS i(fresh, request_id, flow_id, status, attempts, started_at, finished_at, queue_delay_ms,
                                error, step_count, n)
       ), up AS (
         INSERT INTO ${e} AS cur (id, request_id, flow_id, status, attempts, created_at, updated_at, finished_at,
                                 queue_delay_ms, error, cursor, step_count)
         SELECT fresh, request_id, flow_id, status, attempts, started_at, finished_at, finished_at, queue_delay_ms, error,
                NULL, step_count
         FROM input ORDER BY n
         ON CONFLICT (request_id) DO UPDATE SET
           status = excluded.status, attempts = excluded.attempts, updated_at = excluded.updated_at,
           finished_at = excluded.finished_at, error = excluded.error, cursor = NULL, step_count = excluded.step_count
         WHERE cur.status NOT IN ('completed', 'filtered')
         RETURNING id, request_id
       ), cleared AS (
         DELETE FROM ${st} WHERE execution_id IN (
           SELECT up.id FROM up JOIN input ON input.request_id = up.request_id WHERE up.id <> input.fresh)
         RETURNING 1
       ), ins AS (
         INSERT INTO ${st} (execution_id, seq, step_id, type, status, attempt, started_at, finished_at, input, output, error)
         SELECT up.id, row_number() OVER (PARTITION BY s.n ORDER BY s.k), s.step_id, s.type, s.status, s.attempt,
                s.started_at, s.finished_at, s.input, s.output, s.error
         FROM unnest($11::integer[], $12::text[], $13::text[], $14::text[], $15::integer[], $16::float8[], $17::float8[],
                     $18::text[], $19::text[], $20::text[])
                WITH ORDINALITY AS s(n, step_id, type, status, attempt, started_at, finished_at, input, output, error, k)
         JOIN input ON input.n = s.n
         JOIN up ON up.request_id = input.request_id
         WHERE (SELECT count(*) FROM cleared) >= 0
       )
       SELECT input.request_id, coalesce(up.id, (SELECT x.id FROM ${e} x WHERE x.request_id = input.request_id)) AS id
       FROM input LEFT JOIN up ON up.request_id = input.request_id`,
      [
        run(() => newId()),
        run((r) => r.requestId),
        run((r) => r.flowId),
        run((r) => r.status),
        run((r) => r.attempt),
        run((r) => r.startedAt),
        run((r) => r.finishedAt),
        run((r) => r.queueDelayMs ?? null),
        run((r) => r.error ?? null),
        run((r) => r.steps.length),
        steps.map(({ n }) => n),
        step('stepId'),
        step('type'),
        step('status'),
        step('attempt'),
        step('startedAt'),
        step('finishedAt'),
        step('input'),
        step('output'),
        step('error'),
      ],
      'hookd_execution_save_runs',
    );
    const ids = new Map<string, string>();
    for (const r of rows) if (r.id !== null) ids.set(r.request_id, r.id);
    const missing = runs.filter((r) => !ids.has(r.requestId)).map((r) => r.requestId);
    if (missing.length > 0) {
      // Finished by a concurrent transaction that committed after this statement's snapshot.
      const again = await this.db.query<{ request_id: string; id: string }>(
        `SELECT request_id, id FROM ${e} WHERE request_id = ANY($1::text[])`,
        [missing],
      );
      for (const r of again.rows) ids.set(r.request_id, r.id);
    }
    for (const r of runs) if (!ids.has(r.requestId)) throw new Error(`saveRun: no execution for request ${r.requestId}`);
    return ids;
  }
}

