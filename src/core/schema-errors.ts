/**
 * Schema validation errors (TypeBox's and fastify's ajv, same shape) as one line per path, naming
 * the path and every rule broken there: "/steps/1: must have required properties expression",
 * "/querystring/status: must be one of "completed", "dead"".
 */
export interface SchemaError {
  instancePath: string;
  message: string;
  keyword: string;
  params: Record<string, unknown>;
}

/** What a string pattern asks for, in words, by the pattern's source (namedPattern). */
const PATTERN_WORDS = new Map<string, string>();

/**
 * A pattern for a schema whose broken rule is then said in words ("must be a date and time with
 * its zone…") rather than as the regular expression ("must match pattern "^\d{4}-…"").
 */
export function namedPattern(pattern: string, words: string): string {
  PATTERN_WORDS.set(pattern, words);
  return pattern;
}

export function describeSchemaErrors(errors: Iterable<SchemaError>, prefix = ''): string[] {
  const byPath = new Map<string, SchemaError[]>();
  for (const e of errors) {
    // The property an additionalProperties error names is reported there; its own "schema is
    // false" line says nothing more.
    if (e.message === 'schema is false') continue;
    const list = byPath.get(e.instancePath) ?? [];
    list.push(e);
    byPath.set(e.instancePath, list);
  }
  const out: string[] = [];
  for (const [p, list] of byPath) {
    const where = `${prefix}${p}` || '/';
    const allowed = list.filter((e) => e.keyword === 'const').map((e) => JSON.stringify(e.params.allowedValue));
    if (allowed.length > 0) out.push(`${where}: must be one of ${allowed.join(', ')}`);
    else {
      // Every rule broken at this path (a missing and an unknown property are both worth saying),
      // without the anyOf summary when there is something more precise.
      const precise = list.filter((x) => x.keyword !== 'anyOf');
      for (const e of precise.length > 0 ? precise : list) {
        const names = e.params.additionalProperty ?? e.params.additionalProperties; // typebox 1.x: a list
        const extra = e.keyword === 'additionalProperties' ? `: ${(Array.isArray(names) ? names : [names]).map(String).join(', ')}` : '';
        const words = e.keyword === 'pattern' ? PATTERN_WORDS.get(String(e.params.pattern)) : undefined;
        const line = `${where}: ${words ?? e.message}${extra}`;
        if (!out.includes(line)) out.push(line);
      }
    }
  }
  return out;
}
