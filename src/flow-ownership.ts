import type { FlowOwners } from './store/backend.js';

/** Which limited flows this instance consumes (RabbitMQ mode; see Backend.flowOwners). */
export interface FlowOwnership {
  /**
   * Whether this instance holds the flow now (a flow it may consume although it has a limit):
   * granted by its last hold, and that hold surely not run out yet by the local clock (its send
   * time + lease − interval). A process that was stalled (SIGSTOP, a long GC pause, a frozen VM)
   * sees false as soon as it resumes, before its timer had a chance to notice.
   */
  holds(flowId: string): boolean;
  /**
   * Whether a job of the flow received here may still run here (FlowRunnerOptions.mayRun): the
   * flow is held here, consumed or being given up (its jobs here end before it is let go), and the
   * hold surely not run out by the local clock. False once the hold may have lapsed: another
   * instance may hold the flow by now and run its later jobs. A lapse found this way ends the
   * consuming of the flows held here at once (as the timer would have at its next tick).
   */
  mayRun(flowId: string): boolean;
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
  /**
   * Whether this instance still holds jobs of the flow it has not settled (running, or received
   * and waiting): a flow given up to balance the holds is let go only once it has none, so that
   * its next holder never runs its jobs beside this one's (the limit, the order of `concurrency: 1`).
   */
  busy: (flowId: string) => boolean;
  /** The flows consumed here changed (taken, lost, given up), now `count` of them: consume accordingly. */
  onChange: (count: number) => void;
  logger: { warn(obj: object, msg: string): void };
}

/**
 * Keeps this instance's holds on limited flows (RabbitMQ mode): at start and then every
 * `intervalMs` it asks to hold every flow with a concurrency limit; the store renews its own and
 * grants those nobody else holds (or whose holder stopped renewing) up to its share of them (the
 * flows over the instances taking part, rounded up). Each flow then has one consuming instance,
 * and its limit holds for the cluster. Only instances that run flows take part (an ingest-only
 * instance holding a flow would leave its jobs waiting).
 *
 * Balance: an instance holding more than its share (it was alone when it took them; another
 * instance started since) gives the surplus up in two steps — it stops consuming those flows at
 * once, keeps renewing them until it has settled every job of theirs it received, then leaves
 * them out of its next hold, and another instance takes them at its next one. A flow moves with a
 * pause of about one interval and never runs on two instances at once.
 *
 * An instance that cannot renew (database down) stops consuming its flows one interval before
 * its lease may run out by its own clock (the hold's send time + lease − interval), since another
 * instance may take them over then; deliveries it already started run to their end.
 */
export async function startFlowOwnership(o: FlowOwnershipOptions): Promise<FlowOwnership> {
  /** Flows held and consumed here. */
  let held: ReadonlySet<string> = new Set();
  /** Flows held but being given up (over the share): not consumed, renewed until their jobs here end. */
  const leaving = new Set<string>();
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
    const limited = o.limitedFlows();
    asked = key(limited);
    // Flows being given up whose jobs here have all ended: left out of this hold, which lets them go.
    const letGo = new Set([...leaving].filter((id) => !o.busy(id)));
    const wanted = letGo.size === 0 ? limited : limited.filter((id) => !letGo.has(id));
    // No limited flow and nothing held: no statement (rows of a hold whose answer was lost expire).
    // An instance holding none of many limited flows still asks: that counts it in the shares.
    if (limited.length === 0 && held.size === 0 && leaving.size === 0) return;
    try {
      const { held: granted, holders } = await o.owners.hold(wanted, limited.length);
      if (stopped) return;
      const until = sentAt + o.owners.leaseMs - o.intervalMs;
      // An answer that came back too late (a slow network, a long pause): its holds may have
      // lapsed at the database and been taken by another instance meanwhile.
      if (Date.now() >= until) {
        leaving.clear();
        expire();
        return;
      }
      heldUntil = until;
      for (const id of leaving) if (!granted.has(id)) leaving.delete(id);
      set(balance(granted, leaving, Math.ceil(limited.length / Math.max(1, holders))));
    } catch (err) {
      o.logger.warn({ err }, 'flow ownership: renewing the holds on limited flows failed');
      expire();
    }
  };

  const expire = (): void => {
    if (stopped || Date.now() < heldUntil) return;
    // Flows being given up stay in `leaving` (not consumed): let go once idle, or renewed if granted.
    if (held.size > 0) set(new Set());
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

  /** The last hold is surely ours still, by the local clock. */
  const fresh = (): boolean => Date.now() < heldUntil;

  return {
    holds: (flowId) => held.has(flowId) && fresh(),
    mayRun: (flowId) => {
      if (stopped || !fresh()) {
        expire();
        return false;
      }
      return held.has(flowId) || leaving.has(flowId);
    },
    refresh: () => {
      if (key(o.limitedFlows()) !== asked) void hold();
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await inFlight;
      held = new Set();
      leaving.clear();
      await o.owners.releaseAll().catch((err: unknown) => o.logger.warn({ err }, 'flow ownership: giving up the holds failed; the other instances take them when they run out'));
    },
  };
}

/**
 * The flows to consume out of those granted: at most `share` of them. Those over it join
 * `leaving` (the last in sorted order, so that the choice is stable); while under it, flows
 * being given up are kept again instead (another instance left, the share grew).
 */
function balance(granted: ReadonlySet<string>, leaving: Set<string>, share: number): Set<string> {
  const kept = [...granted].filter((id) => !leaving.has(id)).sort();
  while (kept.length > share) leaving.add(kept.pop()!);
  for (const id of [...leaving].sort()) {
    if (kept.length >= share) break;
    leaving.delete(id);
    kept.push(id);
  }
  return new Set(kept);
}

function key(flowIds: readonly string[]): string {
  return [...flowIds].sort().join('\n');
}
