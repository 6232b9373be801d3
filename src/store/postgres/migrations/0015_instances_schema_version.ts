/**
 * The highest schema version each instance's build knows, recorded with its beats: an upgraded
 * instance can tell that instances of an earlier hookd still run on the database (a rolling
 * upgrade) and write nothing they would misread meanwhile (app.ts: FLOWS_DIR). Null: a build
 * before this migration.
 */
export const version = 15;
export const name = 'instances_schema_version';

export const sql = `
ALTER TABLE instances ADD COLUMN IF NOT EXISTS schema_version integer;
`;
