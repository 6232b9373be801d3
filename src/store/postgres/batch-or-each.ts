import { isStatementError } from './errors.js';
import type { Outcome } from './group-commit.js';

/**
 * A group commit's batch in ONE statement (`exec` of all items); if that statement fails on bad
 * data (a statement error), each item runs again alone, so the error stays with its item and the
 * others are stored. Any other failure (database unavailable) rejects the whole batch.
 */
export async function batchOrEach<I, K, R>(
  items: readonly I[],
  exec: (items: readonly I[]) => Promise<Map<K, R>>,
  keyOf: (item: I) => K,
): Promise<Array<Outcome<R>>> {
  try {
    const results = await exec(items);
    return items.map((i) => ({ ok: true, value: results.get(keyOf(i))! }));
  } catch (err) {
    if (items.length === 1 || !isStatementError(err)) throw err;
  }
  const outcomes: Array<Outcome<R>> = [];
  for (const item of items) {
    try {
      outcomes.push({ ok: true, value: (await exec([item])).get(keyOf(item))! });
    } catch (err) {
      if (!isStatementError(err)) throw err;
      outcomes.push({ ok: false, error: err });
    }
  }
  return outcomes;
}
