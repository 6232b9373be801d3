import type { JobRow } from '../../rows.js';
import { LEASE_LOST_ERROR, LOST_DELIVERY_LIMIT } from '../../../core/job.js';
import { flowsPerClaim, interleaveByFlow, MAX_FLOWS_SCANNED, shareOf } from '../../../queue/fair-claim.js';
import type { Op } from './define-op.js';

export interface ClaimJobsArgs {
  owner: string;
  limit: number;
  /**
   * Flows that limit their executions at once: how many more of each this claim may lease
   * (leasing-consumer.ts ClaimCaps). Such a flow's jobs come only in its turns, never as the
   * oldest of any flow.
   */
  caps?: Record<string, number>;
}

/**
 * Rounds of a claim with caps that find nothing because their scan was cut at MAX_FLOWS_SCANNED by
 * flows at their caps, at most (claimCapped): due jobs past 4 × 256 such flows wait for the sweep.
 */
const CAPPED_EMPTY_SCANS = 4;

export interface ClaimJobsResult {
  jobs: JobRow[];
  /** When fewer than limit were due: the earliest run_at / lease expiry still ahead, if any. */
  nextDueAt: number | null;
}

/**
 * Lease up to `limit` due jobs to `owner`, shared among the flows that have due jobs
 * (fair-claim.ts): flows are taken in turn by id, starting after the last flow the previous claim
 * served, up to flowsPerClaim(limit) of them, each given an equal share of the claim, oldest run_at
 * first within a flow; what the shares leave (flows with fewer due jobs than their share, flows
 * past the scan) goes to the oldest due jobs of any flow. So a claim returns fewer than `limit`
 * jobs only when no more are due.
 *
 * Expired leases (a consumer that crashed or hung) are first turned back into ready jobs, or into
 * dead letters when that lost delivery was the last attempt: at-least-once, but a job that keeps
 * killing its consumer stops. A lost delivery that never began (no execution begun with its
 * attempt: the job was prefetched or handed off, not started) gives the job one more attempt
 * instead of spending one, up to LOST_DELIVERY_LIMIT times. The attempt number still grows (it
 * is part of the lease token, which must never repeat); max_attempts grows with it.
 */
export const claimJobs: Op<ClaimJobsArgs, ClaimJobsResult> = ({ db, leaseMs }) => {
  const expire = db.prepare(
    `UPDATE jobs SET
       lost = lost + x.unbegun,
       max_attempts = max_attempts + x.unbegun,
       state = CASE WHEN attempts >= max_attempts + x.unbegun THEN 'dead' ELSE 'ready' END,
       dead_at = CASE WHEN attempts >= max_attempts + x.unbegun THEN @now END,
       last_error = CASE WHEN attempts >= max_attempts + x.unbegun THEN @error ELSE last_error END,
       run_at = min(run_at, @now), lease_until = NULL, lease_owner = NULL
     FROM (
       SELECT j.id AS jid,
              CASE WHEN j.lost < ${LOST_DELIVERY_LIMIT} AND NOT EXISTS (
                SELECT 1 FROM executions e WHERE e.request_id = j.request_id AND e.attempts >= j.attempts
              ) THEN 1 ELSE 0 END AS unbegun
       FROM jobs j WHERE j.state = 'leased' AND j.lease_until <= @now
     ) AS x
     WHERE jobs.id = x.jid
     RETURNING state, request_id`,
  );
  // A job whose lost delivery was its last attempt: its execution ends dead too, with the same
  // error (else it would show as running for ever). A finished one is left as it is.
  const executionDead = db.prepare(
    `UPDATE executions SET status = 'dead', updated_at = @now, finished_at = @now, error = @error
     WHERE request_id = @requestId AND status NOT IN ('completed', 'filtered', 'dead')`,
  );
  // Walks jobs_ready_flow: the oldest waiting job of the next flow after a given one (one seek).
  const nextFlow = db.prepare(
    `SELECT flow_id, run_at, id FROM jobs WHERE state = 'ready' AND flow_id > ? ORDER BY flow_id, run_at LIMIT 1`,
  ).raw();
  const dueOfFlow = db.prepare(`SELECT id FROM jobs WHERE state = 'ready' AND flow_id = ? AND run_at <= ? ORDER BY run_at LIMIT ?`).pluck();
  const claimIds = db.prepare(
    `UPDATE jobs SET state = 'leased', attempts = attempts + 1, lease_until = ?, lease_owner = ?
     WHERE id IN (SELECT value FROM json_each(?))
     RETURNING id, flow_id, request_id, attempts, max_attempts, enqueued_at, last_error`,
  );
  const claimOldest = db.prepare(
    `UPDATE jobs SET state = 'leased', attempts = attempts + 1, lease_until = ?, lease_owner = ?
     WHERE id IN (SELECT id FROM jobs WHERE state = 'ready' AND run_at <= ? ORDER BY run_at LIMIT ?)
     RETURNING id, flow_id, request_id, attempts, max_attempts, enqueued_at, last_error`,
  );
  const nextDue = db
    .prepare(
      `SELECT min(coalesce((SELECT min(run_at) FROM jobs WHERE state = 'ready'), 1e300),
                  coalesce((SELECT min(lease_until) FROM jobs WHERE state = 'leased'), 1e300))`,
    )
    .pluck();
  // After a claim with caps: the next job that comes due (or lease that runs out) later. Due jobs
  // left now belong to flows at their caps (a wake when one of their jobs ends does the rest,
  // leasing-consumer.ts), not to a timer. An index seek (jobs_ready), whatever those backlogs hold.
  const nextLater = db
    .prepare(
      `SELECT min(coalesce((SELECT min(run_at) FROM jobs WHERE state = 'ready' AND run_at > ?), 1e300),
                  coalesce((SELECT min(lease_until) FROM jobs WHERE state = 'leased'), 1e300))`,
    )
    .pluck();

  /** The flow the previous claim served last: the next claim starts after it. */
  let cursor = '';

  /**
   * Up to `count` flows with due jobs, in id order from just after the cursor, round the ring once;
   * each with its oldest job's id; `scannedTo`: the last flow looked at when the scan stopped at
   * MAX_FLOWS_SCANNED (the next claim then starts after it, past the flows found not due).
   */
  const dueFlows = (count: number, now: number, caps: Record<string, number> | undefined): { flows: Array<[flow: string, oldest: string]>; scannedTo?: string } => {
    const flows: Array<[string, string]> = [];
    const start = cursor;
    let after = start;
    let wrapped = false;
    let scanned = 0;
    while (flows.length < count) {
      if (scanned >= MAX_FLOWS_SCANNED) return { flows, scannedTo: after };
      const first = nextFlow.get(after) as [string, number, string] | undefined;
      if (first === undefined || (wrapped && first[0] > start)) {
        if (wrapped || start === '') break;
        wrapped = true;
        after = '';
        continue;
      }
      scanned++;
      // A flow at its limit is passed over: it has no turn while its jobs are all taken.
      if (first[1] <= now && caps?.[first[0]] !== 0) flows.push([first[0], first[2]]);
      after = first[0];
    }
    return { flows };
  };

  /**
   * Turns of up to `flowCount` of the ring's due flows for a claim of `limit`, each flow's share
   * capped: the jobs, in the order to start them.
   */
  const takeTurns = (limit: number, flowCount: number, now: number, leaseUntil: number, owner: string, caps: Record<string, number> | undefined): { jobs: JobRow[]; flows: number; scannedTo?: string } => {
    const { flows, scannedTo } = dueFlows(flowCount, now, caps);
    if (flows.length === 0) {
      cursor = scannedTo ?? cursor;
      return { jobs: [], flows: 0, ...(scannedTo !== undefined ? { scannedTo } : {}) };
    }
    const perFlow: string[][] = [];
    for (const [i, [flow, oldest]] of flows.entries()) {
      const n = Math.min(shareOf(limit, flows.length, i), caps?.[flow] ?? Number.POSITIVE_INFINITY);
      // A share of one (a claim of one job): the oldest, found by the scan.
      perFlow.push(n === 1 ? [oldest] : (dueOfFlow.all(flow, now, n) as string[]));
    }
    const order = interleaveByFlow(perFlow);
    // Read as ready a moment ago in this transaction, on the only writer: every one comes back.
    const rows = claimIds.all(leaseUntil, owner, JSON.stringify(order)) as JobRow[];
    const byId = new Map(rows.map((r) => [r.id, r]));
    cursor = scannedTo ?? flows.at(-1)![0];
    return { jobs: order.map((id) => byId.get(id)!), flows: flows.length, ...(scannedTo !== undefined ? { scannedTo } : {}) };
  };

  /**
   * A claim with caps (limited or stopped flows): the fair turns, each flow's share capped by what
   * is left of its cap, then more rounds of turns — each giving every due flow at least one job —
   * until the claim is full or a round finds nothing more, so that it comes back short only when
   * nothing more is due (as a claim without caps). No oldest-first fill: it would walk past a
   * limited flow's whole backlog (jobs_ready in run_at order) on every claim; index seeks only.
   * Every round takes a job or ends the claim, except rounds whose scan was cut at
   * MAX_FLOWS_SCANNED by flows at their caps: at most CAPPED_EMPTY_SCANS of those.
   */
  const claimCapped = (a: ClaimJobsArgs & { caps: Record<string, number> }, now: number, leaseUntil: number): ClaimJobsResult => {
    const caps = { ...a.caps };
    const jobs: JobRow[] = [];
    for (let round = 0, emptyScans = 0; jobs.length < a.limit; round++) {
      const want = a.limit - jobs.length;
      const turn = takeTurns(want, round === 0 ? flowsPerClaim(want) : Math.min(want, MAX_FLOWS_SCANNED), now, leaseUntil, a.owner, caps);
      for (const j of turn.jobs) if (caps[j.flow_id] !== undefined) caps[j.flow_id]!--;
      jobs.push(...turn.jobs);
      if (turn.jobs.length === 0 && (turn.scannedTo === undefined || ++emptyScans >= CAPPED_EMPTY_SCANS)) break;
    }
    if (jobs.length >= a.limit) return { jobs, nextDueAt: null };
    const next = nextLater.get(now) as number;
    return { jobs, nextDueAt: next >= 1e300 ? null : next };
  };

  return (a) => {
    const now = Date.now();
    const leaseUntil = now + leaseMs;
    for (const r of expire.all({ now, error: LEASE_LOST_ERROR }) as Array<{ state: string; request_id: string }>) {
      if (r.state === 'dead') executionDead.run({ now, error: LEASE_LOST_ERROR, requestId: r.request_id });
    }
    if (a.caps !== undefined) return claimCapped({ ...a, caps: a.caps }, now, leaseUntil);
    const turn = takeTurns(a.limit, flowsPerClaim(a.limit), now, leaseUntil, a.owner, undefined);
    const jobs = turn.jobs;
    // The whole ring walked and no flow due: no job is (a flow is due when its oldest job is).
    const noneDue = turn.flows === 0 && turn.scannedTo === undefined;
    if (jobs.length < a.limit && !noneDue) jobs.push(...(claimOldest.all(leaseUntil, a.owner, now, a.limit - jobs.length) as JobRow[]));
    if (jobs.length >= a.limit) return { jobs, nextDueAt: null };
    const next = nextDue.get() as number;
    return { jobs, nextDueAt: next >= 1e300 ? null : next };
  };
};
