/**
 * No table changes: the version marks the flow definitions this hookd writes. Builds that knew
 * schema 6 (December 5 2026, 13:51, up to this migration) read them wrongly: those before http step
 * credential headers were sealed sent the sealed text as the header ("Authorization: v1:…") to
 * the step's URL, those before per-flow concurrency ran a flow limited to 1 several times at once.
 * They refuse only a database with schema versions they do not know, so a change of what is
 * stored that older builds would misread gets a version of its own, as a table change does.
 */
export const version = 7;
export const name = 'flow_format_2';

export const sql = `
SELECT 1;
`;
