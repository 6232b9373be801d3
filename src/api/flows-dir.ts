import { readdirSync, readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import path from 'node:path';
import YAML from 'yaml';
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
      const data: unknown = file.toLowerCase().endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
      const items = Array.isArray(data) ? data : [data];
      for (const item of items) {
        const base = path.basename(file).replace(/\.(ya?ml|json)$/i, '');
        const id = (item as { id?: unknown })?.id;
        const flowId = typeof id === 'string' ? id : items.length === 1 ? base : undefined;
        if (flowId === undefined) throw new Error('each flow in a list needs an id');
        flows.push(buildFlow(item, flowId, existing(flowId)));
      }
    } catch (err) {
      throw new Error(`${full}: ${(err as Error).message}`);
    }
  }
  return flows;
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
