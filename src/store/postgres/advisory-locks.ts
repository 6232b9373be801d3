import { createHash } from 'node:crypto';

/** First key of hookd's advisory locks ('hook'); the second is derived from the purpose and schema name. */
export const LOCK_NAMESPACE = 0x686f6f6b;

/** The second key of one of hookd's advisory locks in a schema (`migrate`, `capped-claim`). */
export function advisoryLockKey(purpose: string, schema: string): number {
  return createHash('sha256').update(`hookd:${purpose}:${schema}`).digest().readInt32BE(0);
}
