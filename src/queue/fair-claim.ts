/**
 * Fair claims of the database queues (embedded SQLite, PostgreSQL). One table holds every flow's
 * jobs; claimed oldest first, a flow flooded with requests (or whose steps fail and come back)
 * would put its whole backlog in front of every other flow's jobs. Instead, a claim walks the flows
 * that have due jobs in id order, starting after the flow the previous claim served last (a ring:
 * every flow gets its turn), and gives each of up to ⌈limit / JOBS_PER_TURN⌉ flows an equal share
 * of the claim (shareOf; a single due flow gets the whole claim); within a flow, oldest first.
 * What the shares leave goes to the oldest due jobs of any flow, so that a claim still returns
 * fewer jobs than it asked for only when no more are due (consumers rely on that to go idle). RabbitMQ gets the same from a queue per flow (rabbitmq/topology.ts).
 */

/**
 * A turn takes up to this many jobs of a flow in a row: a quiet flow waits for at most this many
 * jobs of each flow ahead of it in the ring. Taking one job per flow and turn halved how fast a
 * backlog filled flow by flow drains (`npm run bench:drain -- --flows 100 --clustered`: 8,201
 * against 13,224 executions/s oldest first): its claims and acks then touch a page of the jobs
 * table per job; four in a row gave 12,891.
 */
const JOBS_PER_TURN = 4;

/** How many flows a claim of `limit` jobs takes its turns from. */
export function flowsPerClaim(limit: number): number {
  return Math.ceil(limit / JOBS_PER_TURN);
}

/**
 * The share of the flow at `index` (0-based, ring order) of a claim of `limit` jobs from `flows`
 * flows: equal shares that add up to the limit, the first `limit mod flows` one job more.
 */
export function shareOf(limit: number, flows: number, index: number): number {
  return Math.floor(limit / flows) + (index < limit % flows ? 1 : 0);
}

/**
 * Flows looked at per claim, due or not: bounds a claim's cost when many flows have only delayed
 * jobs (retries waiting). A scan that stops there moves the ring's cursor to the last flow it
 * looked at, so the next claim goes on past them; due jobs beyond it meanwhile go oldest first to
 * whatever the turns leave.
 */
export const MAX_FLOWS_SCANNED = 256;

/**
 * One list of jobs claimed per flow (in the ring's order, oldest first in each) → the order to
 * start them in: the first job of each flow, then the second of each, … A consumer with a prefetch
 * starts its jobs in this order.
 */
export function interleaveByFlow<T>(perFlow: readonly (readonly T[])[]): T[] {
  if (perFlow.length === 1) return [...perFlow[0]!];
  const out: T[] = [];
  for (let rank = 0; ; rank++) {
    let any = false;
    for (const jobs of perFlow) {
      const job = jobs[rank];
      if (job === undefined) continue;
      out.push(job);
      any = true;
    }
    if (!any) return out;
  }
}
