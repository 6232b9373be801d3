/**
 * Waiting for a condition on a consumer's state (slots free, settles done) without polling: every
 * state change calls changed(), which re-checks the conditions waited for and resolves those that
 * hold. A wait with a timeout resolves when it runs out whether or not its condition held.
 */
export class Conditions {
  private waiters: Array<() => boolean> = [];

  until(cond: () => boolean, timeoutMs?: number): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): boolean => {
        if (!cond()) return false;
        if (timer) clearTimeout(timer);
        resolve();
        return true;
      };
      this.waiters.push(check);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== check);
          resolve();
        }, timeoutMs);
      }
    });
  }

  changed(): void {
    if (this.waiters.length > 0) this.waiters = this.waiters.filter((w) => !w());
  }
}
