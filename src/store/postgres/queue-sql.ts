import { LEASE_LOST_ERROR, LOST_DELIVERY_LIMIT, stoppedFlowNote, type DeadLetter, type DeadLetterQuery, type NewJob, type RetryDeadOutcome, type BulkRetryResult, type DeadLetterSelection } from '../../core/job.js';
import type { FlowBacklog, QueueStats } from '../../queue/contract.js';
import type { ClaimCaps } from '../../queue/leasing-consumer.js';
import { advisoryLockKey, LOCK_NAMESPACE } from './advisory-locks.js';
import { NOW_MS, type PgDatabase } from './database.js';
import { GroupCommit } from './group-commit.js';
import { newId } from './ids.js';
import { flowsPerClaim, MAX_FLOWS_SCANNED } from '../../queue/fair-claim.js';
import { clip, JOB_COLUMNS, toDeadLetter, type JobRow } from './rows.js';

/** A dead letter made ready again (both retries): attempts from 1, the lost deliveries given back. */
const REVIVED = `state = 'ready', attempts = 0, max_attempts = max_attempts - lost, lost = 0, run_at = ${NOW_MS}, dead_at = NULL`;


/**
 * Identifies one delivery of a job: attempts grows with every claim, and the owner is the consumer
 * the job is leased to. A consumer that lost its lease (expired and re-claimed, or released) cannot
 * ack, nack or dead-letter the new delivery by mistake.
 */
export interface LeaseToken {
  jobId: string;
  attempts: number;
  owner: string;
}

/** Condition matching a job still leased under a token; binds $1 jobId, $2 attempts, $3 owner. */
const LEASE_MATCH = "id = $1 AND attempts = $2::integer AND lease_owner = $3 AND state = 'leased'";

export type NackResult = { outcome: 'retry'; delayMs: number } | { outcome: 'dead' } | { outcome: 'lost' };

/** A row of the fair claim: a job (its columns null when none was claimed) and what the walk found. */
type FairClaimRow = JobRow & { due_flows: number; last_turn: string | null; scanned_to: string | null };

/** Rounds of a claim with caps that find nothing because their scan was cut by flows at their caps, at most (QueueSql.claimCapped). */
const CAPPED_EMPTY_SCANS = 4;

/** With a single flow due, one claim in this many is a fair one (QueueSql.claim). */
const FAIR_CLAIM_EVERY = 4;

/**
 * The fair claim (QueueSql.claim); binds $1 owner, $2 limit, $3 lease ms, $4 cursor, $5
 * MAX_FLOWS_SCANNED, $6 flowsPerClaim(limit); `capped`: also $7 the limited flows' ids and $8
 * their caps (what the claim may take of each: a flow at 0 has no turn, the others at most that).
 */
function fairClaimSql(jobs: string, capped = false): string {
  // The next flow after `from` with a waiting job, and its oldest job's run_at (one seek of jobs_ready_flow_id).
  const next = (from: string) =>
    `SELECT j.flow_id, j.run_at FROM ${jobs} j WHERE j.state = 'ready' AND j.flow_id > ${from} ORDER BY j.flow_id, j.run_at LIMIT 1`;
  return `WITH RECURSIVE
       after_cursor(flow_id, run_at, n) AS (
         SELECT f.flow_id, f.run_at, 1 FROM (${next('$4::text')}) f
         UNION ALL
         SELECT f.flow_id, f.run_at, a.n + 1 FROM after_cursor a CROSS JOIN LATERAL (${next('a.flow_id')}) f
         WHERE a.n < $5::integer),
       -- Round the ring to the cursor, within what is left of the scan's bound.
       up_to_cursor(flow_id, run_at, n) AS (
         SELECT f.flow_id, f.run_at, 1 FROM (${next("''")}) f
         WHERE (SELECT count(*) FROM after_cursor) < $5::integer
         UNION ALL
         SELECT f.flow_id, f.run_at, u.n + 1 FROM up_to_cursor u CROSS JOIN LATERAL (${next('u.flow_id')}) f
         WHERE u.flow_id < $4::text AND u.n + (SELECT count(*) FROM after_cursor) < $5::integer),
       ring AS (
         SELECT flow_id, run_at, n AS pos FROM after_cursor
         UNION ALL
         SELECT flow_id, run_at, $5::integer + n FROM up_to_cursor WHERE flow_id <= $4::text),
       -- No ORDER BY: the ring comes in scan order, and the scan goes only as far as the LIMIT needs.
       -- A flow is due when its oldest waiting job is. One flow more than the claim takes its
       -- turns from: tells whether another flow is due.
       due AS MATERIALIZED (
         SELECT flow_id, pos, row_number() OVER () AS k FROM ring WHERE run_at <= ${NOW_MS}${capped ? ' AND NOT (flow_id = ANY (SELECT u.f FROM unnest($7::text[], $8::integer[]) u(f, c) WHERE u.c <= 0))' : ''}
         LIMIT $6::integer + 1),
       turns AS (SELECT * FROM due WHERE k <= $6::integer),
       -- Shares that add up to the limit (the first limit mod n flows take one more), so that no
       -- LIMIT on the result is needed: with one, the plan's guess of its size depends on $2 and
       -- PostgreSQL plans the statement again at every call (a custom plan, ≈ 0.4 ms).
       picked AS (
         SELECT p.id, p.run_at, d.flow_id, d.pos FROM turns d CROSS JOIN LATERAL (
           SELECT j.id, j.run_at FROM ${jobs} j
           WHERE j.state = 'ready' AND j.flow_id = d.flow_id AND j.run_at <= ${NOW_MS}
           ORDER BY j.flow_id, j.run_at, j.id
           LIMIT ${capped ? 'LEAST(' : ''}(SELECT $2::integer / count(*)::integer + CASE WHEN d.k <= $2::integer % count(*)::integer THEN 1 ELSE 0 END FROM turns)${capped ? ', coalesce((SELECT u.c FROM unnest($7::text[], $8::integer[]) u(f, c) WHERE u.f = d.flow_id), 2147483647))' : ''}
           FOR UPDATE SKIP LOCKED) p),
       chosen AS (
         SELECT id, pos, row_number() OVER (PARTITION BY flow_id ORDER BY run_at, id) AS rank FROM picked),
       -- = ANY(ARRAY(…)): a lookup by primary key per job, whatever the plan guesses of chosen's size
       -- (joined, a generic plan read every job: a hash join over a sequential scan).
       claimed AS (
         UPDATE ${jobs} SET state = 'leased', attempts = attempts + 1, lease_until = ${NOW_MS} + $3::float8, lease_owner = $1
         WHERE id = ANY(ARRAY(SELECT id FROM chosen))
         RETURNING ${JOB_COLUMNS}),
       -- Always one row, jobs or not. scanned_to: the last flow looked at, when the scan used up
       -- its bound (only read once the ring was walked to its end: CASE keeps it from walking it).
       meta AS (
         SELECT (SELECT count(*) FROM due)::integer AS due_flows,
                (SELECT flow_id FROM turns ORDER BY k DESC LIMIT 1) AS last_turn,
                CASE WHEN (SELECT count(*) FROM due) <= $6::integer THEN
                  CASE WHEN (SELECT count(*) FROM ring) >= $5::integer THEN (SELECT flow_id FROM ring ORDER BY pos DESC LIMIT 1) END
                END AS scanned_to)
       SELECT ${JOB_COLUMNS.split(', ').map((c) => `claimed.${c}`).join(', ')}, meta.due_flows, meta.last_turn, meta.scanned_to
       FROM meta LEFT JOIN (claimed JOIN chosen ON chosen.id = claimed.id) ON true
       ORDER BY chosen.rank, chosen.pos`;
}

/** When the next job becomes due, as seen on the database clock. */
export interface DueInfo {
  now: number;
  nextRunAt: number | null;
  nextLeaseEnd: number | null;
  /** Leases held by consumers of an instance the registry counts as gone (it died): end them now. */
  goneLeases: boolean;
}

/**
 * When an instance of the registry counts as gone: no beat for `expireMs`. `steady()`: whether this
 * process may judge that now — its own beats have gone through without a break for at least
 * `expireMs`. Right after an outage of the database every other instance looks gone too, until
 * each has beaten again; a process that was cut off itself cannot tell who else was.
 */
export interface InstanceJudgement {
  expireMs: number;
  steady(): boolean;
}

/**
 * SQL true when job `j`'s lease belongs to a live owner: one without an instance (no `/` in
 * lease_owner: a consumer outside the instance registry), or of an instance that beat within the
 * expiry bound to `expireParam` (milliseconds).
 */
function liveOwner(instances: string, expireParam: string): string {
  return `(strpos(j.lease_owner, '/') = 0 OR EXISTS (
             SELECT 1 FROM ${instances} i
             WHERE i.id = split_part(j.lease_owner, '/', 1) AND i.seen_at >= ${NOW_MS} - ${expireParam}::float8))`;
}

/**
 * The statements of the PostgreSQL queue. Each is one autocommit statement; times are epoch ms on
 * the database clock (NOW_MS), and delays are returned relative to it so a host whose clock is off
 * still arms its timers right. Claims lock with FOR UPDATE SKIP LOCKED: consumers in any number of
 * processes never wait for each other and never get the same job.
 */
export class QueueSql {
  /**
   * Acks of one event-loop turn (or arriving while the previous group commits) go out as one DELETE:
   * a commit costs far more than the statement, and every job ends with an ack.
   */
  private readonly acks: GroupCommit<LeaseToken, boolean>;

  constructor(
    private readonly db: PgDatabase,
    readonly leaseMs: number,
    /** The instance registry's judgement of gone instances (PgQueueOptions.instance); absent: none is ever gone. */
    private readonly registry?: InstanceJudgement,
  ) {
    this.fairClaimText = fairClaimSql(db.t.jobs);
    this.cappedClaimText = fairClaimSql(db.t.jobs, true);
    this.cappedClaimLock = advisoryLockKey('capped-claim', db.schema);
    this.acks = new GroupCommit(async (tokens) => {
      const { rows } = await this.db.query<{ id: string; attempts: number }>(
        `DELETE FROM ${this.jobs} j USING unnest($1::text[], $2::integer[], $3::text[]) AS t(id, attempts, owner)
         WHERE j.id = t.id AND j.attempts = t.attempts AND j.lease_owner = t.owner AND j.state = 'leased'
         RETURNING j.id, j.attempts`,
        [tokens.map((t) => t.jobId), tokens.map((t) => t.attempts), tokens.map((t) => t.owner)],
        'hookd_queue_ack',
      );
      const acked = new Set(rows.map((r) => `${r.id}/${r.attempts}`));
      return tokens.map((t) => ({ ok: true, value: acked.has(`${t.jobId}/${t.attempts}`) }));
    }, { maxItems: 1_000, maxBytes: Number.POSITIVE_INFINITY, maxInflight: 1 });
  }

  private get jobs(): string {
    return this.db.t.jobs;
  }

  /** The flow the previous claim of this process served last: the next claim starts after it. */
  private cursor = '';
  /** Claims that take the oldest (cheaper) before the next fair one: the last fair claim found at most one flow due. */
  private oldestLeft = 0;
  /** The fair claim's statement (built once: the table names are fixed). */
  private readonly fairClaimText: string;
  /** The same with caps for limited flows. */
  private readonly cappedClaimText: string;
  /** The advisory lock claims with room under a limit take (claimCapped). */
  private readonly cappedClaimLock: number;

  /**
   * Lease up to `limit` due jobs to `owner`, shared among the flows that have due jobs
   * (queue/fair-claim.ts; SQLite's claim-jobs.ts does the same): one statement walks the flows
   * with waiting jobs by id from just after the cursor, round the ring once (a loose index scan of
   * jobs_ready_flow_id, at most MAX_FLOWS_SCANNED flows), keeps the first flowsPerClaim(limit) with a
   * due job, and leases an equal share of each, oldest first. A second statement gives what the
   * shares left (or what other consumers held locked) to the oldest due jobs of any flow, so that fewer
   * than `limit` jobs come back only when no more are due. Jobs come back in the order to start
   * them: the first of each flow, then the second of each, …
   *
   * The statement costs PostgreSQL more than an oldest-first claim (a drain of one flow's backlog:
   * 137 against 69 µs of its CPU per job, `npm run bench:drain -- --backend postgres`): while the
   * last fair claim found at most one flow due, only every FAIR_CLAIM_EVERY-th claim is a fair one
   * (the others take the oldest, which is the same thing with one flow), so a flow whose jobs come
   * in behind another's backlog waits at most that many claims to be seen.
   */
  async claim(owner: string, limit: number, caps?: ClaimCaps): Promise<JobRow[]> {
    if (caps !== undefined && caps.size > 0) return this.claimCapped(owner, limit, caps);
    if (this.oldestLeft > 0) {
      this.oldestLeft--;
      return this.claimOldest(owner, limit);
    }
    const { rows } = await this.db.query<FairClaimRow>(
      this.fairClaimText,
      [owner, limit, this.leaseMs, this.cursor, MAX_FLOWS_SCANNED, flowsPerClaim(limit)],
      'hookd_queue_claim_fair',
    );
    const meta = rows[0]!;
    this.oldestLeft = meta.due_flows <= 1 ? FAIR_CLAIM_EVERY - 1 : 0;
    this.cursor = meta.scanned_to ?? meta.last_turn ?? this.cursor;
    // The meta columns ride along unread (toJob picks its fields by name).
    const claimed: JobRow[] = rows.filter((r) => r.id !== null);
    // The whole ring walked and no flow due: no job is.
    if (claimed.length >= limit || (meta.due_flows === 0 && meta.scanned_to === null)) return claimed;
    const rest = await this.claimOldest(owner, limit - claimed.length);
    return rest.length === 0 ? claimed : [...claimed, ...rest];
  }

  /**
   * claim() when some flows limit their executions at once or are stopped (leasing-consumer.ts
   * ClaimCaps): the fair statement with the caps (a flow at 0 has no turn, the others at most what
   * is left of theirs), then more rounds of it — each giving every due flow at least one job —
   * until the claim is full or a round takes nothing, so that it comes back short only when
   * nothing more is due (the consumer then waits for a wake-up). No oldest-first fill: it would
   * walk past a limited flow's whole backlog on every claim (jobs_ready in run_at order); the fair
   * statement's loose index scan only, whatever the backlogs and however many flows have a limit.
   * Every round takes a job or ends the claim, except rounds whose scan was cut at
   * MAX_FLOWS_SCANNED by flows at their caps: at most CAPPED_EMPTY_SCANS of those.
   *
   * A limit holds for every consumer of the queue together, whatever process it is in: the caps
   * (the limit less what this consumer holds) are lowered by the live leases other consumers hold
   * of the flow. Claims of limited flows take one advisory lock per schema first, in a
   * transaction, so that two of them cannot both count the other's leases as not yet there; only
   * claims with room under a limit take it (a stopped flow's 0 needs no count).
   */
  private async claimCapped(owner: string, limit: number, caps: ClaimCaps): Promise<JobRow[]> {
    // Caps of a rate alone are this process's own (its share of the rate): not lowered by others' leases.
    const open: string[] = [];
    for (const [flowId, cap] of caps) if (cap > 0 && caps.rateOnly?.has(flowId) !== true) open.push(flowId);
    if (open.length === 0) return this.claimRounds((text, values, name) => this.db.query(text, values, name), owner, limit, caps);
    return this.db.transaction(async (query) => {
      await query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, this.cappedClaimLock], 'hookd_queue_claim_lock');
      // A lease of a consumer whose instance stopped beating (it died) holds no share: the flow
      // goes on elsewhere within the registry's expiry instead of the lease's. Owners without an
      // instance (`/`) always count. `ending`: a lease of these flows ran out, or its instance is
      // gone — end those first (their jobs are ready again in their turn, before this claim
      // picks) and count again; rare, so the usual claim keeps its one count.
      const expireMs = this.goneAfterMs();
      const count = async () =>
        (await query(
          `SELECT l.flow_id,
                  (count(*) FILTER (WHERE l.lease_until > ${NOW_MS} AND l.lease_owner <> $1 AND l.live))::integer AS n,
                  bool_or(l.lease_until <= ${NOW_MS} OR ($4::boolean AND NOT l.live)) AS ending
           FROM (SELECT j.flow_id, j.lease_until, j.lease_owner, ${liveOwner(this.db.t.instances, '$3')} AS live
                 FROM ${this.jobs} j
                 WHERE j.state = 'leased' AND j.flow_id = ANY($2::text[])) AS l
           GROUP BY l.flow_id`,
          [owner, open, expireMs ?? Number.MAX_SAFE_INTEGER, expireMs !== undefined],
          'hookd_queue_leased_elsewhere',
        )) as { rows: Array<{ flow_id: string; n: number; ending: boolean }> };
      let { rows } = await count();
      if (rows.some((r) => r.ending)) {
        await this.endLeases(query, open);
        ({ rows } = await count());
      }
      if (rows.length === 0) return this.claimRounds(query, owner, limit, caps);
      const left = new Map(caps);
      for (const r of rows) left.set(r.flow_id, Math.max(0, (left.get(r.flow_id) ?? 0) - r.n));
      return this.claimRounds(query, owner, limit, left);
    });
  }

  /** The rounds of claimCapped, each statement through `query`. */
  private async claimRounds(
    query: (text: string, values: unknown[], name: string) => Promise<{ rows: unknown[] }>,
    owner: string,
    limit: number,
    caps: ReadonlyMap<string, number>,
  ): Promise<JobRow[]> {
    const left = new Map(caps);
    const claimed: JobRow[] = [];
    for (let round = 0, emptyScans = 0; claimed.length < limit; round++) {
      const want = limit - claimed.length;
      const flowCount = round === 0 ? flowsPerClaim(want) : Math.min(want, MAX_FLOWS_SCANNED);
      const rows = (await query(
        this.cappedClaimText,
        [owner, want, this.leaseMs, this.cursor, MAX_FLOWS_SCANNED, flowCount, [...left.keys()], [...left.values()]],
        'hookd_queue_claim_capped',
      )).rows as FairClaimRow[];
      const meta = rows[0]!;
      this.cursor = meta.scanned_to ?? meta.last_turn ?? this.cursor;
      const jobs = rows.filter((r) => r.id !== null);
      for (const j of jobs) {
        const cap = left.get(j.flow_id);
        if (cap !== undefined) left.set(j.flow_id, cap - 1);
      }
      claimed.push(...jobs);
      if (jobs.length === 0 && (meta.scanned_to === null || ++emptyScans >= CAPPED_EMPTY_SCANS)) break;
    }
    return claimed;
  }

  /** Lease up to `limit` due jobs of any flow to `owner`, oldest run_at first. */
  private async claimOldest(owner: string, limit: number): Promise<JobRow[]> {
    // UPDATE … RETURNING yields rows in no particular order: sorted again, oldest first.
    const { rows } = await this.db.query<JobRow>(
      `WITH claimed AS (
         UPDATE ${this.jobs}
         SET state = 'leased', attempts = attempts + 1, lease_until = ${NOW_MS} + $3::float8, lease_owner = $1
         WHERE id IN (
           SELECT id FROM ${this.jobs} WHERE state = 'ready' AND run_at <= ${NOW_MS}
           ORDER BY run_at, id LIMIT $2::integer FOR UPDATE SKIP LOCKED)
         RETURNING ${JOB_COLUMNS}, run_at)
       SELECT ${JOB_COLUMNS} FROM claimed ORDER BY run_at, id`,
      [owner, limit, this.leaseMs],
      'hookd_queue_claim',
    );
    return rows;
  }

  /** The registry's expiry when gone instances may be judged now (InstanceJudgement), else undefined. */
  private goneAfterMs(): number | undefined {
    return this.registry?.steady() === true ? this.registry.expireMs : undefined;
  }

  async due(): Promise<DueInfo> {
    // Without an instance registry (or a steady view of it), no lease ends before its time.
    const expireMs = this.goneAfterMs();
    const gone =
      expireMs === undefined
        ? 'false'
        : `EXISTS (SELECT 1 FROM ${this.jobs} j WHERE j.state = 'leased' AND NOT ${liveOwner(this.db.t.instances, '$1')})`;
    const { rows } = await this.db.query<{ now: number; next_run: number | null; next_lease: number | null; gone_leases: boolean }>(
      `SELECT ${NOW_MS} AS now,
              (SELECT min(run_at) FROM ${this.jobs} WHERE state = 'ready') AS next_run,
              (SELECT min(lease_until) FROM ${this.jobs} WHERE state = 'leased') AS next_lease,
              ${gone} AS gone_leases`,
      expireMs === undefined ? [] : [expireMs],
      // A prepared statement's name stands for one text.
      expireMs === undefined ? 'hookd_queue_due' : 'hookd_queue_due_gone',
    );
    const r = rows[0]!;
    return { now: r.now, nextRunAt: r.next_run, nextLeaseEnd: r.next_lease, goneLeases: r.gone_leases };
  }

  /**
   * Leases that ran out (a consumer crashed or hung without heartbeat) become ready again, or dead
   * letters when that lost delivery was the last attempt: at-least-once, but a job that keeps
   * killing its consumer stops. A lost delivery that never began gives the job one more attempt
   * instead of spending one, up to LOST_DELIVERY_LIMIT times (SQLite's claim-jobs.ts says
   * how). Returns how many became ready.
   *
   * With an instance registry, the leases of an instance counted as gone (no beat within its
   * expiry: 3 x FLOW_REFRESH, at least 5 s) end too, before their time: a crashed instance's jobs
   * run elsewhere within seconds instead of after QUEUE_LEASE (30 s).
   */
  async expireLeases(): Promise<number> {
    return this.endLeases((text, values, name) => this.db.query(text, values, name));
  }

  /**
   * expireLeases through `query` (a claim's transaction), for the jobs of `flowIds` only if given:
   * a claim of limited flows ends their leases first, so that a job whose instance died goes on
   * in its turn (its run_at) instead of behind the jobs claimed before the sweep would end it.
   */
  private async endLeases(
    query: (text: string, values: unknown[], name: string) => Promise<{ rows: unknown[] }>,
    flowIds?: readonly string[],
  ): Promise<number> {
    const expireMs = this.goneAfterMs();
    const values: unknown[] = [LEASE_LOST_ERROR];
    let ended = `j.lease_until <= ${NOW_MS}`;
    if (expireMs !== undefined) {
      values.push(expireMs);
      ended = `(${ended} OR NOT ${liveOwner(this.db.t.instances, `$${values.length}`)})`;
    }
    if (flowIds !== undefined) {
      values.push(flowIds);
      ended += ` AND j.flow_id = ANY($${values.length}::text[])`;
    }
    const { rows } = (await query(
      `WITH expired AS (
         SELECT j.id, j.lease_until > ${NOW_MS} AS early, split_part(j.lease_owner, '/', 1) AS instance,
                CASE WHEN j.lost < ${LOST_DELIVERY_LIMIT} AND NOT EXISTS (
                  SELECT 1 FROM ${this.db.t.executions} e WHERE e.request_id = j.request_id AND e.attempts >= j.attempts
                ) THEN 1 ELSE 0 END AS unbegun
         FROM ${this.jobs} j WHERE j.state = 'leased' AND ${ended}
         FOR UPDATE OF j SKIP LOCKED)
       , moved AS (
       UPDATE ${this.jobs} AS jobs SET
         lost = jobs.lost + expired.unbegun,
         max_attempts = jobs.max_attempts + expired.unbegun,
         state = CASE WHEN jobs.attempts >= jobs.max_attempts + expired.unbegun THEN 'dead' ELSE 'ready' END,
         dead_at = CASE WHEN jobs.attempts >= jobs.max_attempts + expired.unbegun THEN ${NOW_MS} END,
         last_error = CASE WHEN jobs.attempts >= jobs.max_attempts + expired.unbegun THEN $1::text ELSE jobs.last_error END,
         run_at = least(jobs.run_at, ${NOW_MS}), lease_until = NULL, lease_owner = NULL
       FROM expired WHERE jobs.id = expired.id
       RETURNING jobs.state, jobs.request_id, expired.early, expired.instance)
       , execution_dead AS (
         -- A job whose lost delivery was its last attempt: its execution ends dead too (else it
         -- shows as running for ever). A finished one is left as it is.
         UPDATE ${this.db.t.executions} AS e SET status = 'dead', updated_at = ${NOW_MS}, finished_at = ${NOW_MS}, error = $1::text
         FROM moved WHERE moved.state = 'dead' AND e.request_id = moved.request_id AND e.status NOT IN ('completed', 'filtered', 'dead'))
       SELECT state, early, instance FROM moved`,
      values,
      // A prepared statement's name stands for one text.
      `hookd_queue_expire${expireMs === undefined ? '' : '_gone'}${flowIds === undefined ? '' : '_flows'}`,
    )) as { rows: Array<{ state: string; early: boolean; instance: string }> };
    const early = new Map<string, number>();
    for (const r of rows) if (r.early) early.set(r.instance, (early.get(r.instance) ?? 0) + 1);
    for (const [instance, jobs] of early) {
      this.db.logger.warn({ goneInstance: instance, jobs, noBeatForMs: expireMs }, 'postgres queue: an instance stopped beating (it died, or lost the database); its leased jobs are delivered again now');
    }
    return rows.filter((r) => r.state === 'ready').length;
  }

  /**
   * Heartbeat: push back the lease of these jobs if still leased to `owner`. Returns the ids whose
   * lease was extended: any other is no longer `owner`'s.
   */
  async extendLeases(owner: string, jobIds: readonly string[]): Promise<string[]> {
    const { rows } = await this.db.query<{ id: string }>(
      `UPDATE ${this.jobs} SET lease_until = ${NOW_MS} + $3::float8
       WHERE id = ANY($2::text[]) AND lease_owner = $1 AND state = 'leased' RETURNING id`,
      [owner, jobIds, this.leaseMs],
      'hookd_queue_extend',
    );
    return rows.map((r) => r.id);
  }

  /** Wait for the acks in flight. */
  drain(): Promise<void> {
    return this.acks.drain();
  }

  /** Done: delete the job if the lease is still ours (group commit). False when the lease was lost. */
  ack(t: LeaseToken): Promise<boolean> {
    return this.acks.submit(t, t.jobId, 0);
  }

  /** Failed: ready again after the delay, or dead when this delivery was the last attempt. */
  /** `uncounted`: the delivery gives its attempt back and cannot make the job dead (its flow is stopped). */
  async nack(t: LeaseToken, delayMs: number, error: string, uncounted = false): Promise<NackResult> {
    const { rows } = await this.db.query<{ state: string }>(
      `UPDATE ${this.jobs} SET
         state = CASE WHEN NOT $6::boolean AND attempts >= max_attempts THEN 'dead' ELSE 'ready' END,
         dead_at = CASE WHEN NOT $6::boolean AND attempts >= max_attempts THEN ${NOW_MS} END,
         attempts = attempts - CASE WHEN $6::boolean THEN 1 ELSE 0 END,
         run_at = ${NOW_MS} + $4::float8, last_error = $5::text, lease_until = NULL, lease_owner = NULL
       WHERE ${LEASE_MATCH}
       RETURNING state`,
      [t.jobId, t.attempts, t.owner, Math.max(0, delayMs), clip(error), uncounted],
      'hookd_queue_nack',
    );
    const state = rows[0]?.state;
    if (state === undefined) return { outcome: 'lost' };
    return state === 'dead' ? { outcome: 'dead' } : { outcome: 'retry', delayMs: Math.max(0, delayMs) };
  }

  /** Failed for good: straight to the dead letters. False when the lease was lost. */
  async deadLetter(t: LeaseToken, error: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE ${this.jobs}
       SET state = 'dead', dead_at = ${NOW_MS}, last_error = $4::text, lease_until = NULL, lease_owner = NULL
       WHERE ${LEASE_MATCH}`,
      [t.jobId, t.attempts, t.owner, clip(error)],
      'hookd_queue_dead_letter',
    );
    return (rowCount ?? 0) > 0;
  }

  /**
   * Give a leased job back (consumer shutting down): ready at once, and the delivery does not count
   * as an attempt. False when the lease was already lost. Its run_at stays: it keeps its turn
   * (SQLite's release-job.ts).
   */
  async release(t: LeaseToken): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE ${this.jobs}
       SET state = 'ready', attempts = attempts - 1, run_at = least(run_at, ${NOW_MS}), lease_until = NULL, lease_owner = NULL
       WHERE ${LEASE_MATCH}`,
      [t.jobId, t.attempts, t.owner],
      'hookd_queue_release',
    );
    return (rowCount ?? 0) > 0;
  }

  /** A ready job (re-queue, replay). Returns how long until it is due (≤ 0: now). */
  async enqueue(job: NewJob): Promise<{ jobId: string; delayMs: number }> {
    const jobId = newId();
    const { rows } = await this.db.query<{ delay: number }>(
      `INSERT INTO ${this.jobs} (id, flow_id, request_id, state, attempts, max_attempts, run_at, enqueued_at)
       VALUES ($1, $2, $3, 'ready', 0, $4::integer, coalesce($5::float8, ${NOW_MS}), ${NOW_MS})
       RETURNING run_at - ${NOW_MS} AS delay`,
      [jobId, job.flowId, job.requestId, job.maxAttempts, job.runAt ?? null],
      'hookd_queue_enqueue',
    );
    return { jobId, delayMs: rows[0]!.delay };
  }

  /**
   * Dead letter back to ready with attempts reset (last_error kept for context), and the attempts
   * lost deliveries added given back (expireLeases). False when not dead.
   */
  /** As SQLite's retry-dead-job.ts: only while the job's flow exists. */
  async retryDead(jobId: string): Promise<RetryDeadOutcome> {
    const { rows } = await this.db.query<{ outcome: RetryDeadOutcome }>(
      `WITH revived AS (
         UPDATE ${this.jobs} j SET ${REVIVED}
         WHERE j.id = $1 AND j.state = 'dead' AND EXISTS (SELECT 1 FROM ${this.db.t.flows} f WHERE f.id = j.flow_id)
         RETURNING j.id, j.request_id),
       retrying AS (${this.executionsRetrying('revived')})
       SELECT CASE WHEN EXISTS (SELECT 1 FROM revived) THEN 'revived'
                   WHEN EXISTS (SELECT 1 FROM ${this.jobs} WHERE id = $1 AND state = 'dead') THEN 'noFlow'
                   ELSE 'notDead' END AS outcome`,
      [jobId],
    );
    return rows[0]?.outcome ?? 'notDead';
  }

  /**
   * As SQLite's EXECUTION_RETRYING: the executions of the jobs a CTE revived wait for their
   * delivery again, in the revive's statement (the runner cannot have taken a job yet).
   */
  private executionsRetrying(revived: string): string {
    return `UPDATE ${this.db.t.executions} SET status = 'retrying', updated_at = ${NOW_MS}, finished_at = NULL
            WHERE status = 'dead' AND request_id IN (SELECT request_id FROM ${revived})`;
  }

  /** As SQLite's retry-dead-jobs.ts: oldest first, only while the job's flow exists. */
  async retryDeadLetters(s: DeadLetterSelection): Promise<BulkRetryResult> {
    const selection = `state = 'dead' AND ($1::text IS NULL OR flow_id = $1) AND ($2::float8 IS NULL OR dead_at >= $2)`;
    const { rows } = await this.db.query<{ retried: number; remaining: number }>(
      `WITH revived AS (
         UPDATE ${this.jobs} j SET ${REVIVED}
         WHERE j.id IN (SELECT id FROM ${this.jobs} d WHERE ${selection}
                          AND EXISTS (SELECT 1 FROM ${this.db.t.flows} f WHERE f.id = d.flow_id)
                        ORDER BY dead_at, id LIMIT $3)
           AND j.state = 'dead'
         RETURNING j.id, j.request_id),
       retrying AS (${this.executionsRetrying('revived')})
       SELECT (SELECT count(*) FROM revived)::int AS retried,
              (SELECT count(*) FROM ${this.jobs} WHERE ${selection})::int - (SELECT count(*) FROM revived)::int AS remaining`,
      [s.flowId ?? null, s.since ?? null, s.limit],
    );
    return rows[0] ?? { retried: 0, remaining: 0 };
  }

  /** As SQLite's wake-stopped-jobs.ts. */
  async wakeStopped(flowId: string): Promise<number> {
    const { rowCount } = await this.db.query(
      `UPDATE ${this.jobs} SET run_at = ${NOW_MS} WHERE flow_id = $1 AND state = 'ready' AND run_at > ${NOW_MS} AND last_error = $2`,
      [flowId, stoppedFlowNote(flowId)],
    );
    return rowCount ?? 0;
  }

  async discardDead(jobId: string): Promise<boolean> {
    const { rowCount } = await this.db.query(`DELETE FROM ${this.jobs} WHERE id = $1 AND state = 'dead'`, [jobId]);
    return (rowCount ?? 0) > 0;
  }

  async deadLetters(query: DeadLetterQuery): Promise<DeadLetter[]> {
    const cols = `${JOB_COLUMNS}, dead_at`;
    const where = [`state = 'dead'`];
    const params: unknown[] = [];
    if (query.flowId !== undefined) {
      params.push(query.flowId);
      where.push(`flow_id = $${params.length}`);
    }
    if (query.before !== undefined) {
      params.push(query.before.deadAt, query.before.id);
      where.push(`(dead_at, id) < ($${params.length - 1}::float8, $${params.length}::text)`);
    }
    params.push(query.limit);
    const { rows } = await this.db.query<JobRow>(
      `SELECT ${cols} FROM ${this.jobs} WHERE ${where.join(' AND ')} ORDER BY dead_at DESC, id DESC LIMIT $${params.length}`,
      params,
    );
    return rows.map(toDeadLetter);
  }

  async stats(): Promise<QueueStats> {
    const { rows } = await this.db.query<{ ready: number; in_flight: number; delayed: number; dead: number }>(
      `SELECT (SELECT count(*) FROM ${this.jobs} WHERE state = 'ready' AND run_at <= ${NOW_MS})::integer AS ready,
              (SELECT count(*) FROM ${this.jobs} WHERE state = 'leased')::integer AS in_flight,
              (SELECT count(*) FROM ${this.jobs} WHERE state = 'ready' AND run_at > ${NOW_MS})::integer AS delayed,
              (SELECT count(*) FROM ${this.jobs} WHERE state = 'dead')::integer AS dead`,
    );
    const r = rows[0]!;
    return { ready: r.ready, inFlight: r.in_flight, delayed: r.delayed, dead: r.dead };
  }

  /** Queue.flowBacklog, on the database clock (the partial index on ready jobs by flow answers it). */
  async flowBacklog(): Promise<FlowBacklog[]> {
    const { rows } = await this.db.query<{ flow_id: string; ready: number; oldest_ms: number }>(
      `SELECT flow_id, count(*)::integer AS ready, greatest(0, ${NOW_MS} - min(run_at))::float8 AS oldest_ms
         FROM ${this.jobs} WHERE state = 'ready' AND run_at <= ${NOW_MS} GROUP BY flow_id`,
    );
    return rows.map((r) => ({ flowId: r.flow_id, ready: r.ready, oldestReadyMs: Math.round(r.oldest_ms) }));
  }

  /**
   * Move rows left in the outbox (written while hookd ran with RabbitMQ) into the queue, so switching
   * to the PostgreSQL queue loses no job. Returns how many moved.
   */
  async adoptOutbox(): Promise<number> {
    const { rowCount } = await this.db.query(
      `WITH moved AS (DELETE FROM ${this.db.t.outbox} RETURNING id, flow_id, request_id, max_attempts, enqueued_at)
       INSERT INTO ${this.jobs} (id, flow_id, request_id, state, attempts, max_attempts, run_at, enqueued_at)
       SELECT id, flow_id, request_id, 'ready', 0, max_attempts, ${NOW_MS}, enqueued_at FROM moved
       ON CONFLICT (id) DO NOTHING`,
    );
    return rowCount ?? 0;
  }
}
