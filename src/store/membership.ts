import type { InstanceRegistry } from './backend.js';
import { RecurringFailure } from '../core/repeated-log.js';

export interface Membership {
  /** This instance's share of a cluster-wide limit: 1 / the live instances (1 when alone). */
  share(): number;
  /**
   * This instance's share of what the instances running flows split among them (a flow's
   * execution rate on the PostgreSQL queue): 1 / the live instances with workers (1 when alone).
   */
  workerShare(): number;
  /** Stop beating and leave the registry (shutdown). Never throws. */
  stop(): Promise<void>;
}

interface MembershipLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Keeps this process in its backend's instance registry (distributed mode): a beat every
 * `intervalMs`, instances not seen for three intervals count as gone. The first beat is awaited,
 * so limits are shared from the first request. Without a registry (embedded) the share is 1.
 * When beats fail (database down) the last known count stays in force.
 */
export async function startMembership(
  registry: InstanceRegistry | undefined,
  intervalMs: number,
  logger: MembershipLogger,
  /** Called with the live instance count after every successful beat (a metric). */
  onCount?: (n: number) => void,
  /** Whether this instance runs flows (WORKER_CONCURRENCY > 0). */
  runsFlows = true,
): Promise<Membership> {
  if (registry === undefined) return { share: () => 1, workerShare: () => 1, stop: async () => {} };
  const expireMs = instanceExpireMs(intervalMs);
  let live = 1;
  let running = 1;
  const failure = new RecurringFailure(logger, 'instance registry: beat failed; keeping the last instance count', 'instance registry: beats work again');
  const beat = (): Promise<void> =>
    registry.beat(expireMs, runsFlows).then(
      (n) => {
        live = Math.max(1, n.live);
        running = Math.max(1, n.runningFlows);
        onCount?.(live);
        failure.succeeded();
      },
      (err: unknown) => failure.failed({ err }),
    );
  await beat();
  const timer = setInterval(() => void beat(), intervalMs);
  timer.unref();
  return {
    share: () => 1 / live,
    workerShare: () => 1 / running,
    async stop() {
      clearInterval(timer);
      await registry.leave().catch((err: unknown) => logger.warn({ err }, 'instance registry: leaving failed; the others drop this instance when it expires'));
    },
  };
}

/** After how long without a beat an instance counts as gone: three beat intervals, at least 5 s. */
export function instanceExpireMs(intervalMs: number): number {
  return Math.max(3 * intervalMs, 5_000);
}
