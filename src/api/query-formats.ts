import { namedPattern } from '../core/schema-errors.js';

/** A date and time with its zone (RFC 3339): `2026-12-05T18:00:00Z`, `…+01:00`, fractions allowed. */
export const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
/** ISO_TIME for schemas: a broken one is said in words. */
export const IsoTimePattern = namedPattern(ISO_TIME.source, 'must be a date and time with its zone (RFC 3339, e.g. 2026-12-05T18:00:00Z)');

/**
 * A page's end as `next` gives it: the last row's time (epoch ms as stored, fractions kept) and id.
 * A cursor of values, not of a row: a row removed meanwhile does not end the paging.
 */
export const TIME_ID_CURSOR = /^(\d+(?:\.\d+)?)~([A-Za-z0-9._-]{1,128})$/;
/** TIME_ID_CURSOR for schemas. */
export const TimeIdCursorPattern = namedPattern(TIME_ID_CURSOR.source, 'must be a `next` value as a previous answer gave it (<time>~<id>)');

export const timeIdCursor = (time: number, id: string): string => `${time}~${id}`;

/**
 * An ISO_TIME as epoch ms, or undefined when it names no real time: Date.parse takes
 * `2026-02-30` as March 2nd and `24:00:00` as the next midnight. Fractions beyond the millisecond
 * are dropped.
 */
export function parseIsoTime(text: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})/.exec(text);
  if (m === null || !ISO_TIME.test(text)) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const daysInMonth = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) return undefined;
  const zone = /([+-])(\d{2}):(\d{2})$/.exec(text);
  if (zone !== null && (Number(zone[2]) > 23 || Number(zone[3]) > 59)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}
