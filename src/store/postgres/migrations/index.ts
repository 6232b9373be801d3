import * as m0001 from './0001_init.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** Every migration, in order. Append only: a shipped migration is never edited. */
export const migrations: readonly Migration[] = [m0001];
