/**
 * The one timer of a database queue: when it must look again for due work (a delayed job, a lease
 * that runs out). Arming for a later moment than the one already set changes nothing; arming for an
 * earlier one replaces it. The timer is cleared before `fire` runs, so `fire` may arm it again.
 */
export class WakeTimer {
  private timer: NodeJS.Timeout | undefined;
  private at = Number.POSITIVE_INFINITY;

  constructor(
    private readonly fire: () => void,
    /** The timer does not keep the process up (an owner that clears it on stop anyway). */
    private readonly unref = false,
  ) {}

  /** Fire at `when` (epoch ms) unless already set to fire earlier. */
  armAt(when: number): void {
    if (this.timer !== undefined && this.at <= when) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.at = when;
    // +1: timers are ms-granular, never fire before the moment asked for.
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.at = Number.POSITIVE_INFINITY;
      this.fire();
    }, Math.max(0, when - Date.now()) + 1);
    if (this.unref) this.timer.unref();
  }

  clear(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.at = Number.POSITIVE_INFINITY;
  }
}
