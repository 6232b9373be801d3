/** Parsers for configuration values given as strings (env) or numbers (files). */
import { DURATION_UNITS, formatDuration } from '../core/duration.js';

export { formatDuration };

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, k: 1024, mb: 1024 ** 2, m: 1024 ** 2, gb: 1024 ** 3, g: 1024 ** 3 };

/** "10mb", "512kb", "1048576" → bytes. */
export function parseSize(value: string | number, name: string): number {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0) throw new Error(`${name}: expected a whole number of bytes or a size such as 10mb, got ${value}`);
    return value;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = SIZE_UNITS[(m?.[2] || 'b').toLowerCase()];
  if (!m || unit === undefined) throw new Error(`${name}: cannot read size "${value}" (use e.g. 10mb, 512kb, 1048576)`);
  return Math.floor(Number(m[1]) * unit);
}

/** parseSize's inverse: the largest unit that holds the value whole (10485760 → "10mb", 1000 → "1000b"). */
export function formatSize(bytes: number): string {
  for (const unit of ['gb', 'mb', 'kb'] as const) {
    const size = SIZE_UNITS[unit]!;
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}b`;
}

/** "30s", "5m", "30d", "250" (ms) → milliseconds. */
export function parseDuration(value: string | number, name: string): number {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0) throw new Error(`${name}: expected a whole number of ms or a duration such as 30s, got ${value}`);
    return value;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(value);
  if (!m) throw new Error(`${name}: cannot read duration "${value}" (use e.g. 250ms, 30s, 5m, 30d)`);
  return Math.floor(Number(m[1]) * (DURATION_UNITS[(m[2] ?? 'ms').toLowerCase()] ?? 1));
}

export function parseInteger(value: string | number, name: string, min: number, max: number): number {
  // Digits only: Number(' ') is 0 and Number('0x10') is 16.
  const n = typeof value === 'number' ? value : /^\s*-?\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}: expected an integer in [${min}, ${max}], got "${value}"`);
  return n;
}

export function parseBoolean(value: string | boolean, name: string): boolean {
  if (typeof value === 'boolean') return value;
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new Error(`${name}: expected true or false, got "${value}"`);
}
