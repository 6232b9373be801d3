/** A date and time with its zone (RFC 3339): `2026-12-05T18:00:00Z`, `…+01:00`, fractions allowed. */
export const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * A page's end as `next` gives it: the last row's time (epoch ms as stored, fractions kept) and id.
 * A cursor of values, not of a row: a row removed meanwhile does not end the paging.
 */
export const TIME_ID_CURSOR = /^(\d+(?:\.\d+)?)~([A-Za-z0-9._-]{1,128})$/;

export const timeIdCursor = (time: number, id: string): string => `${time}~${id}`;
