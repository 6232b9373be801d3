import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

// ajv-formats is CommonJS: its default export arrives as the module object under NodeNext.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule) as unknown as (ajv: Ajv2020) => void;

interface Operation {
  responses: Record<string, { content?: Record<string, { schema: object }> }>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, object> };
}

/**
 * Checks answers of the management API against its own OpenAPI document (GET /api/openapi.json):
 * the status must be one the operation lists, and a JSON answer must match the schema given for it.
 * The test helpers run every answer they get through it, so a view that drifts from its documented
 * schema fails the tests that see it.
 */
export class DocumentedResponses {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true });
  private readonly routes: Array<{ re: RegExp; template: string; methods: Record<string, Operation> }>;
  private readonly compiled = new Map<string, ValidateFunction>();

  constructor(private readonly doc: Document) {
    addFormats(this.ajv);
    // The document itself, so that `#/components/schemas/X` resolves.
    this.ajv.addSchema({ $id: 'hookd-openapi', components: doc.components } as object);
    this.routes = Object.entries(doc.paths)
      .filter(([p]) => p.startsWith('/api/'))
      .map(([template, methods]) => ({
        template,
        methods,
        re: new RegExp(`^${template.replace(/\{[A-Za-z]+\}/g, '[^/]+').replaceAll('.', '\\.')}$`),
      }))
      // Literal segments before parameters: /api/requests/replay is not /api/requests/{id}.
      .sort((a, b) => literalWeight(b.template) - literalWeight(a.template));
  }

  /** Throws an Error that says what differs from the document. */
  check(method: string, url: string, status: number, body: unknown, contentType: string | null): void {
    const path = new URL(url, 'http://x').pathname;
    if (!path.startsWith('/api/')) return;
    // The first route of that path that takes the method (GET /api/requests/replay is /api/requests/{id}).
    const route = this.routes.find((r) => r.re.test(path) && r.methods[method.toLowerCase()] !== undefined) ?? this.routes.find((r) => r.re.test(path));
    const where = `${method} ${path} → ${status}`;
    if (route === undefined) {
      // No such route: fastify's 404, in hookd's error shape.
      if (status === 404) return this.validate('Error', { $ref: 'hookd-openapi#/components/schemas/Error' }, body, where);
      throw new Error(`${where}: the route is not in the OpenAPI document`);
    }
    const op = route.methods[method.toLowerCase()];
    if (op === undefined) {
      // A method the route does not take (HEAD included: the API registers none): fastify's 404, as an error.
      if (status === 404 || status === 405) return this.validate('Error', { $ref: 'hookd-openapi#/components/schemas/Error' }, body, where);
      throw new Error(`${where}: the method is not in the OpenAPI document for ${route.template}`);
    }
    const response = op.responses[String(status)];
    if (response === undefined) throw new Error(`${where}: status not documented for ${method} ${route.template} (documented: ${Object.keys(op.responses).join(', ')})`);
    const schema = response.content?.['application/json']?.schema;
    if (schema === undefined || method === 'HEAD' || !contentType?.includes('json')) return;
    this.validate(`${method.toLowerCase()} ${route.template} ${status}`, withDocRefs(schema), body, where);
  }

  private validate(key: string, schema: object, body: unknown, where: string): void {
    // No body (HEAD): nothing to match.
    if (body === undefined) return;
    let fn = this.compiled.get(key);
    if (fn === undefined) {
      fn = this.ajv.compile(schema);
      this.compiled.set(key, fn);
    }
    if (!fn(body)) {
      const problems = (fn.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`).join('; ');
      throw new Error(`${where}: the answer does not match its documented schema: ${problems}\n${JSON.stringify(body).slice(0, 2000)}`);
    }
  }
}

function literalWeight(template: string): number {
  return template.split('/').filter((s) => s !== '' && !s.startsWith('{')).length * 100 - template.split('/').length;
}

/** `#/components/…` refs of a schema taken out of the document, pointed back into it. */
function withDocRefs(schema: object): object {
  return JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"hookd-openapi#/components/')) as object;
}

/**
 * Instances whose answers are checked, by base URL: startHookd registers each until it closes (a
 * port used again later belongs to another instance). Read with the admin token, once.
 */
const byBase = new Map<string, () => Promise<DocumentedResponses>>();

export function registerDocumented(base: string, token: string): () => void {
  let loaded: Promise<DocumentedResponses> | undefined;
  byBase.set(base, () => {
    loaded ??= fetch(`${base}/api/openapi.json`, { headers: { authorization: `Bearer ${token}` } }).then(async (res) => {
      if (res.status !== 200) throw new Error(`GET /api/openapi.json answered ${res.status}`);
      return new DocumentedResponses((await res.json()) as Document);
    });
    return loaded;
  });
  return () => byBase.delete(base);
}

/** The checker of a registered instance at `base`; undefined for others (child processes). */
export function documentedAt(base: string): Promise<DocumentedResponses> | undefined {
  return byBase.get(base)?.();
}
