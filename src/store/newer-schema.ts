/**
 * A database written by a newer hookd than this one: a configuration to change, not an outage to
 * wait out (no 503), said in the words an operator rolling back needs. The backends' migrate()
 * throws it when the database records schema versions this build does not know; nothing has been
 * migrated then.
 */
export class NewerSchemaError extends Error {
  override readonly name = 'NewerSchemaError';
}

/**
 * what: "the database <path>" or "schema <name>"; unknown: the versions this build does not know
 * (with the names the newer build recorded); known: the highest version this build knows; backup:
 * what to restore to go back.
 */
export function newerSchemaError(
  what: string,
  unknown: ReadonlyArray<{ version: number; name: string }>,
  known: number,
  backup: string,
): NewerSchemaError {
  const sorted = [...unknown].sort((a, b) => a.version - b.version);
  const list = sorted.map((m) => `${m.version} (${m.name})`).join(', ');
  const versions = sorted.length === 1 ? `its schema version ${list} is` : `its schema versions ${list} are`;
  return new NewerSchemaError(
    `${what} was upgraded by a newer hookd: ${versions} unknown to this build, which knows versions up to ${known}. ` +
      `Start that hookd (or a later one) on it; to go back to this build, restore the copy of ${backup} taken before the upgrade`,
  );
}
