/** Epoch milliseconds with sub-millisecond precision (execution records, latency measurements). */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}
