import type { FlowOwners } from './store/backend.js';

/** Which limited flows this instance consumes (RabbitMQ mode; see Backend.flowOwners). */
export interface FlowOwnership {
  /** Whether this instance holds the flow now (a flow it may consume although it has a limit). */
  holds(flowId: string): boolean;
  /** Flows changed: hold at once if limitedFlows() lists others than the last hold asked for. */
  refresh(): void;
  /** Stop renewing and give every flow up, so that another instance takes them at its next look. */
  stop(): Promise<void>;
}

export interface FlowOwnershipOptions {
  owners: FlowOwners;
  /** How often holds are renewed (FLOW_REFRESH); well under the owners' lease. */
  intervalMs: number;
  /**
   * The flows to hold: those with a concurrency limit, stopped ones too (held but not consumed:
   * the holder keeps a stopped flow, so that another instance whose flow list is a refresh behind
   * cannot take it and run its jobs meanwhile).
   */
  limitedFlows: () => string[];
  /** The flows held here changed (taken, lost, given up), now `count` of them: consume accordingly. */
  onChange: (count: number) => void;
  logger: { warn(obj: object, msg: string): void };
}

/**
 * Keeps this instance's holds on limited flows (RabbitMQ mode): at start and then every
 * `intervalMs` it asks to hold every started flow with a concurrency limit; the store grants those
 * nobody else holds (or whose holder stopped renewing) and renews its own. Each flow then has one
 * consuming instance, and its limit holds for the cluster. Only instances that run flows take
 * part (an ingest-only instance holding a flow would leave its jobs waiting).
 *
 * An instance that cannot renew (database down) stops consuming its flows one interval before
 * its lease may run out by its own clock (the hold's send time + lease − interval), since another
 * instance may take them over then; deliveries it already started run to their end.
 */
export async function startFlowOwnership(o: FlowOwnershipOptions): Promise<FlowOwnership> {
  let held: ReadonlySet<string> = new Set();
  /** Local clock: until when the last hold is surely ours. */
  let heldUntil = 0;
  let inFlight: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  /** What the last hold asked for, sorted and joined (refresh() compares). */
  let asked = '';

  const set = (next: ReadonlySet<string>): void => {
    const same = next.size === held.size && [...next].every((id) => held.has(id));
    held = next;
    if (!same) o.onChange(held.size);
  };

  const holdOnce = async (): Promise<void> => {
    const sentAt = Date.now();
    const wanted = o.limitedFlows();
    asked = key(wanted);
    // Nothing to hold and nothing held: no statement (rows of a hold whose answer was lost expire).
    if (wanted.length === 0 && held.size === 0) return;
    try {
      const granted = await o.owners.hold(wanted);
      if (stopped) return;
      const until = sentAt + o.owners.leaseMs - o.intervalMs;
      // An answer that came back too late (a slow network, a long pause): its holds may have
      // lapsed at the database and been taken by another instance meanwhile.
      if (Date.now() >= until) {
        expire();
        return;
      }
      heldUntil = until;
      set(granted);
    } catch (err) {
      o.logger.warn({ err }, 'flow ownership: renewing the holds on limited flows failed');
      expire();
    }
  };

  const expire = (): void => {
    if (!stopped && held.size > 0 && Date.now() >= heldUntil) set(new Set());
  };

  const hold = (): Promise<void> => {
    if (stopped) return Promise.resolve();
    if (inFlight !== undefined) {
      again = true;
      return inFlight;
    }
    inFlight = (async () => {
      do {
        again = false;
        await holdOnce();
      } while (again && !stopped);
    })().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };

  await hold();
  const timer = setInterval(() => {
    expire();
    void hold();
  }, o.intervalMs);
  timer.unref();

  return {
    holds: (flowId) => held.has(flowId),
    refresh: () => {
      if (key(o.limitedFlows()) !== asked) void hold();
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await inFlight;
      held = new Set();
      await o.owners.releaseAll().catch((err: unknown) => o.logger.warn({ err }, 'flow ownership: giving up the holds failed; the other instances take them when they run out'));
    },
  };
}

function key(flowIds: readonly string[]): string {
  return [...flowIds].sort().join('\n');
}
