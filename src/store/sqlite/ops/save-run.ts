import { newId } from '../ids.js';
import type { Op } from './define-op.js';

export interface SaveRunArgs {
  requestId: string;
  flowId: string;
  attempt: number;
  startedAt: number;
  finishedAt: number;
  queueDelayMs: number | null;
  status: string;
  error: string | null;
  steps: Array<{
    stepId: string;
    type: string;
    status: string;
    attempt: number;
    startedAt: number;
    finishedAt: number;
    input: string | null;
    output: string | null;
    error: string | null;
  }>;
}

/**
 * A whole run in one op: upsert the request's execution as final, replace its step records. An
 * execution that is already completed or filtered is kept as it was (the WHERE stops the update,
 * and RETURNING then yields nothing).
 */
export const saveRun: Op<SaveRunArgs, string> = ({ db }) => {
  const upsert = db.prepare(
    `INSERT INTO executions (id, request_id, flow_id, status, attempts, created_at, updated_at, finished_at,
                             queue_delay_ms, error, cursor)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)
     ON CONFLICT (request_id) DO UPDATE SET
       status = excluded.status, attempts = excluded.attempts, updated_at = excluded.updated_at,
       finished_at = excluded.finished_at, error = excluded.error, cursor = NULL
     WHERE executions.status NOT IN ('completed', 'filtered')
     RETURNING id`,
  ).pluck();
  const existing = db.prepare('SELECT id FROM executions WHERE request_id = ?').pluck();
  const clear = db.prepare('DELETE FROM execution_steps WHERE execution_id = ?');
  const insert = db.prepare(
    `INSERT INTO execution_steps (execution_id, seq, step_id, type, status, attempt, started_at, finished_at,
                                  input, output, error)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  return (a) => {
    const fresh = newId();
    const id = upsert.get(fresh, a.requestId, a.flowId, a.status, a.attempt, a.startedAt, a.finishedAt, a.finishedAt, a.queueDelayMs, a.error) as
      | string
      | undefined;
    if (id === undefined) return existing.get(a.requestId) as string;
    if (id !== fresh) clear.run(id);
    a.steps.forEach((s, i) => {
      insert.run(id, i + 1, s.stepId, s.type, s.status, s.attempt, s.startedAt, s.finishedAt, s.input, s.output, s.error);
    });
    return id;
  };
};
