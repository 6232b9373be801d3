/**
 * Migration 6 was shipped twice: its first text (builds of December 5 2026, 07:37 to 09:09) rebuilt
 * the retention index as `requests_received_at (received_at, id)`, the text since then builds
 * `requests_received_at_id` (IF NOT EXISTS: an operator may build it CONCURRENTLY beforehand).
 * Same columns, other names: a schema migrated by the first one differs from a new one, and a
 * later migration naming the index would do the wrong thing there. Renamed here (no rebuild); a
 * no-op on the others. Both present (built beforehand, then the first text ran): the old name,
 * the same columns a second time, is dropped.
 */
export const version = 16;
export const name = 'request_order_index_name';

export const sql = `
DO $$
BEGIN
  IF to_regclass('requests_received_at') IS NOT NULL THEN
    IF to_regclass('requests_received_at_id') IS NULL THEN
      ALTER INDEX requests_received_at RENAME TO requests_received_at_id;
    ELSE
      DROP INDEX requests_received_at;
    END IF;
  END IF;
END $$;
`;
