/** Milliseconds per unit, as durations are written in settings (parseDuration) and said back. */
export const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A duration in the units settings are written in (parseDuration's inverse): 60000 → "1m",
 * 1500 → "1.5s", 90061000 → "1d 1h 1m 1s"; under a second in ms.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < DURATION_UNITS.s!) return `${ms} ms`;
  const parts: string[] = [];
  let rest = ms;
  for (const unit of ['d', 'h', 'm'] as const) {
    const size = DURATION_UNITS[unit]!;
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0) parts.push(`${Math.round(rest) / 1000}s`);
  return parts.join(' ');
}
