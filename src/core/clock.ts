/** Epoch milliseconds with sub-millisecond precision: requests' receipt, replays, execution records, latencies. */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}
