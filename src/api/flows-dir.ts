import { readdirSync, readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import path from 'node:path';
import YAML, { LineCounter, isCollection, isMap, isSeq, type Document, type Node } from 'yaml';
import { E, HookdError } from '../core/errors.js';
import { invalidInput } from './checked-body.js';
import { mapSecrets } from '../core/credentials.js';
import type { Flow } from '../core/flow.js';
import { buildFlow } from './flow-definition.js';

/**
 * Flow definitions from FLOWS_DIR (*.yaml, *.yml, *.json; one flow per file, or a list). A file's
 * flow without an id takes the file name. Any invalid file stops the start with its path and reason:
 * silently skipping a flow would drop its webhooks.
 */
export function readFlowsDir(dir: string, existing: (id: string) => Flow | undefined): Flow[] {
  const flows: Flow[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new Error(`FLOWS_DIR: cannot read ${dir} (${(err as Error).message})`);
  }
  const files = names
    .filter((f) => /\.(ya?ml|json)$/i.test(f))
    .sort();
  for (const file of files) {
    const full = path.join(dir, file);
    try {
      const text = readFileSync(full, 'utf8');
      const yaml = file.toLowerCase().endsWith('.json') ? undefined : parseYaml(text);
      const data: unknown = yaml === undefined ? JSON.parse(text) : yaml.data;
      const items = Array.isArray(data) ? data : [data];
      items.forEach((item: unknown, index) => {
        const base = path.basename(file).replace(/\.(ya?ml|json)$/i, '');
        const id = (item as { id?: unknown })?.id;
        const flowId = typeof id === 'string' ? id : items.length === 1 ? base : undefined;
        if (flowId === undefined) throw new Error('each flow in a list needs an id');
        try {
          flows.push(buildFlow(item, flowId, existing(flowId)));
        } catch (err) {
          throw yaml === undefined ? err : withLines(err, yaml, Array.isArray(data) ? [index] : []);
        }
      });
    } catch (err) {
      throw new Error(`${full}: ${(err as Error).message}`);
    }
  }
  return flows;
}

interface ParsedYaml {
  data: unknown;
  doc: Document;
  lines: LineCounter;
}

/** A YAML file, with what it takes to tell the line a value is on. Throws its first syntax error (with line and column). */
function parseYaml(text: string): ParsedYaml {
  const lines = new LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter: lines });
  const first = doc.errors[0];
  if (first !== undefined) throw first;
  return { data: doc.toJS(), doc, lines };
}

/**
 * A flow's VALIDATION_FAILED with each problem led by the line of the file it is on (`line 5:
 * /steps/0/expression: …`): the problems name JSON paths, and a flow author looks for lines. A path
 * that names nothing in the file (a missing property) takes the line of what holds it; an
 * unknown property, the line of that property.
 */
function withLines(err: unknown, yaml: ParsedYaml, prefix: Array<string | number>): unknown {
  if (!(err instanceof HookdError) || err.code !== E.VALIDATION_FAILED.code || !Array.isArray(err.details)) return err;
  const problems = (err.details as unknown[]).map((p) => {
    if (typeof p !== 'string') return p;
    const pointer = /^(\/[^\s:]*)/.exec(p)?.[1];
    if (pointer === undefined) return p;
    const keys: Array<string | number> = pointer.split('/').slice(1).filter((k) => k !== '').map((k) => (/^\d+$/.test(k) ? Number(k) : k));
    const extra = /must not have additional properties: (\S+)$/.exec(p)?.[1];
    const line = lineOf(yaml, [...prefix, ...keys, ...(extra === undefined ? [] : [extra])]);
    // `expression: { "a": body.a }` unquoted is a YAML mapping, not the expression's text.
    const key = keys[keys.length - 1];
    const unquoted = (key === 'expression' || key === 'body') && / must be string$/.test(p) && isCollection(yaml.doc.getIn([...prefix, ...keys], true));
    const said = unquoted ? `${p} (YAML read the unquoted { or [ as its own mapping or list: quote the expression, or write it as a block: \`${String(key)}: |\`)` : p;
    return line === undefined ? said : `line ${line}: ${said}`;
  });
  return invalidInput('flow definition', problems as string[]);
}

/** The line of the deepest node of `keys` the file has (its key's line for a map entry). */
function lineOf(yaml: ParsedYaml, keys: Array<string | number>): number | undefined {
  let node: unknown = yaml.doc.contents;
  let offset: number | undefined = (node as Node | null)?.range?.[0];
  for (const key of keys) {
    if (isMap(node)) {
      const pair = node.items.find((item) => String((item.key as { value?: unknown } | null)?.value) === String(key));
      if (pair === undefined) break;
      offset = (pair.key as Node | null)?.range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number') {
      const item = node.items[key];
      if (item === undefined) break;
      offset = (item as Node).range?.[0] ?? offset;
      node = item;
    } else {
      break;
    }
  }
  return offset === undefined ? undefined : yaml.lines.linePos(offset).line;
}

/**
 * Whether a file's flow says what the stored one says (times aside): at start, a file replaces the
 * stored flow of its id, and a stored flow that differs was most likely changed through the API
 * since — that change is then lost, which the start log says (app.ts). Key order does not count.
 */
export function sameDefinition(a: Flow, b: Flow): boolean {
  return isDeepStrictEqual(comparable(a), comparable(b));
}

/** Times aside, and secrets in one form: a file's `secrets: ["…"]` is stored as `[{value: "…"}]`. */
function comparable(flow: Flow): Omit<Flow, 'createdAt' | 'updatedAt'> {
  const { createdAt: _c, updatedAt: _u, ...rest } = flow;
  return rest.trigger.auth === undefined ? rest : { ...rest, trigger: { ...rest.trigger, auth: mapSecrets(rest.trigger.auth, (v) => v) } };
}
