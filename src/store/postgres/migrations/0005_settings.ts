/**
 * Values every instance must agree on, set once by the first instance that needs one (e.g. the
 * SHA-256 of the generated admin token): src/store/postgres/settings.ts.
 */
export const version = 5;
export const name = 'settings';

export const sql = `
CREATE TABLE settings (
  key   text COLLATE "C" PRIMARY KEY,
  value text NOT NULL
);
`;
