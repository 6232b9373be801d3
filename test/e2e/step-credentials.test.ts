/**
 * Credential headers of http steps over real HTTP, on every backend: sealed in the database (its
 * bytes searched for a canary), masked by the API, shown once on create, kept by a PUT of the
 * hints, sent in plain by the runner to a receiver this test runs, after a restart too; a flow
 * stored before they were sealed runs and is sealed by its next save.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Flow, HttpStepDef } from '../../src/core/flow.js';
import { everyBackend } from '../helpers/every-backend.js';
import { type RunningHookd, startHookd, tempDir, waitFor } from '../helpers/hookd.js';

const { backends, cleanUp } = everyBackend('stepcreds');
const FLOW_IDS = ['sc-flow', 'sc-legacy'];

/** What the receiver got, by path. */
const received = new Map<string, IncomingHttpHeaders[]>();
const receiver = createServer((req, res) => {
  const list = received.get(req.url ?? '') ?? [];
  list.push(req.headers);
  received.set(req.url ?? '', list);
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
});
let port = 0;

beforeAll(async () => {
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  port = (receiver.address() as AddressInfo).port;
});
afterAll(async () => {
  receiver.close();
  await cleanUp(FLOW_IDS);
});

const rnd = () => randomBytes(12).toString('hex');

describe.sequential.each(backends)('http step credential headers (%s)', (name, env) => {
  const dir = tempDir();
  let s: RunningHookd;
  const at = `/${name.replace(/\W+/g, '-')}`;
  const token = `step-canary-${rnd()}`;
  const apiKey = `step-key-${rnd()}`;
  const headers = { authorization: `Bearer ${token}`, 'x-api-key': apiKey, 'x-trace': 'keep-me-visible' };
  const steps = () => [{ id: 'call', type: 'http', url: `http://127.0.0.1:${port}${at}/in`, headers }];

  beforeAll(async () => {
    s = await startHookd({ DATA_DIR: dir, ...env });
  });
  afterAll(async () => {
    await s?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Everything the database holds: SQLite's file and WAL, or every row of the schema's tables as text. */
  async function databaseText(): Promise<string> {
    if (env.DATABASE_SCHEMA === undefined) {
      return Buffer.concat(['hookd.db', 'hookd.db-wal'].map((f) => path.join(dir, f)).filter(existsSync).map((f) => readFileSync(f))).toString('latin1');
    }
    const client = new pg.Client({ connectionString: env.DATABASE_URL });
    await client.connect();
    try {
      const tables = await client.query<{ t: string }>('SELECT table_name AS t FROM information_schema.tables WHERE table_schema = $1', [env.DATABASE_SCHEMA]);
      let text = '';
      for (const { t } of tables.rows) {
        const rows = await client.query<{ r: string }>(`SELECT r::text AS r FROM "${env.DATABASE_SCHEMA}"."${t}" r`);
        text += rows.rows.map((x) => x.r).join('\n');
      }
      return text;
    } finally {
      await client.end();
    }
  }

  /** Calls the flow's webhook and waits for the receiver to get the step's call; its headers. */
  async function deliver(flowId: string, where: string): Promise<IncomingHttpHeaders> {
    const before = received.get(where)?.length ?? 0;
    const res = await fetch(`${s.url}/hook/${flowId}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' });
    expect(res.status).toBe(200);
    await waitFor(() => (received.get(where)?.length ?? 0) > before, 15_000);
    return received.get(where)!.at(-1)!;
  }

  it('the create answer shows the values once; GET and the list show masked hints; the database holds neither', async () => {
    const created = await s.api('POST', '/api/flows', { id: 'sc-flow', steps: steps() });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body.steps[0].headers).toEqual(headers);
    const got = await s.api('GET', '/api/flows/sc-flow');
    expect(got.body.steps[0].headers).toEqual({ authorization: `Bearer …${token.slice(-4)}`, 'x-api-key': `…${apiKey.slice(-4)}`, 'x-trace': 'keep-me-visible' });
    const listed = JSON.stringify((await s.api('GET', '/api/flows')).body);
    for (const text of [JSON.stringify(got.body), listed]) {
      expect(text).not.toContain(token);
      expect(text).not.toContain(apiKey);
    }
    const db = await databaseText();
    expect(db).toContain('keep-me-visible'); // the search works
    expect(db).not.toContain(token);
    expect(db).not.toContain(apiKey);
  });

  it('the runner sends the real values; execution records hold none', async () => {
    const got = await deliver('sc-flow', `${at}/in`);
    expect(got.authorization).toBe(`Bearer ${token}`);
    expect(got['x-api-key']).toBe(apiKey);
    expect(got['x-trace']).toBe('keep-me-visible');
    const done = await waitFor(async () => {
      const items = (await s.api('GET', '/api/executions?flowId=sc-flow&status=completed')).body.items as Array<{ id: string }>;
      return items[0];
    });
    const execution = JSON.stringify((await s.api('GET', `/api/executions/${done!.id}`)).body);
    expect(execution).not.toContain(token);
    expect(execution).not.toContain(apiKey);
    const db = await databaseText();
    expect(db).not.toContain(token);
    expect(db).not.toContain(apiKey);
  });

  it('PUT with the hints keeps the values; a hint sent to another flow, or with the url moved to another origin, is a 400 naming the path', async () => {
    const got = (await s.api('GET', '/api/flows/sc-flow')).body;
    const put = await s.api('PUT', '/api/flows/sc-flow', { name: 'renamed', steps: got.steps });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(put.body.name).toBe('renamed');
    expect(JSON.stringify(put.body), 'kept values are not shown again').not.toContain(token);
    expect((await deliver('sc-flow', `${at}/in`)).authorization).toBe(`Bearer ${token}`);

    const copy = await s.api('PUT', '/api/flows/sc-copy', { steps: got.steps });
    expect(copy.status).toBe(400);
    expect(copy.body.details).toContain(`/steps/0/headers/authorization: "Bearer …${token.slice(-4)}" is a masked value this flow does not hold; send the value itself`);
    expect((await s.api('GET', '/api/flows/sc-copy')).status).toBe(404);
    const moved = await s.api('PUT', '/api/flows/sc-flow', { steps: [{ ...got.steps[0], url: `http://localhost:${port}${at}/in` }] });
    expect(moved.status).toBe(400);
    expect(moved.body.message).toMatch(/\/steps\/0\/headers\/x-api-key: ".*" is a masked value given for calls to another origin/);
  });

  it('after a restart the sealed values still go out', async () => {
    await s.close();
    s = await startHookd({ DATA_DIR: dir, ...env });
    const got = await deliver('sc-flow', `${at}/in`);
    expect(got.authorization).toBe(`Bearer ${token}`);
    expect(got['x-api-key']).toBe(apiKey);
    expect(JSON.stringify((await s.api('GET', '/api/flows/sc-flow')).body)).not.toContain(token);
  });

  it('a flow stored with plain values (before they were sealed) runs and shows masked; its next save seals them', async () => {
    const legacyToken = `legacy-${rnd()}`;
    const now = new Date().toISOString();
    const plain: Flow = {
      id: 'sc-legacy',
      name: 'sc-legacy',
      status: 'started',
      trigger: { type: 'webhook' },
      steps: [{ id: 'call', type: 'http', url: `http://127.0.0.1:${port}${at}/legacy`, headers: { authorization: `Bearer ${legacyToken}` } }],
      createdAt: now,
      updatedAt: now,
    };
    // As a previous version wrote it: straight into the store, past the registry's codec.
    expect(await s.app.backend.flows.put(plain)).toBe(true);
    const shown = (await s.api('GET', '/api/flows/sc-legacy')).body;
    expect(shown.steps[0].headers.authorization).toBe(`Bearer …${legacyToken.slice(-4)}`);
    expect((await deliver('sc-legacy', `${at}/legacy`)).authorization).toBe(`Bearer ${legacyToken}`);
    const storedHeader = async () => ((await s.app.backend.flows.get('sc-legacy'))!.steps[0] as HttpStepDef).headers!.authorization!;
    expect(await storedHeader()).toBe(`Bearer ${legacyToken}`);

    expect((await s.api('PUT', '/api/flows/sc-legacy', { trigger: shown.trigger, steps: shown.steps })).status).toBe(200);
    expect(await storedHeader()).toMatch(/^v1:/);
    expect((await deliver('sc-legacy', `${at}/legacy`)).authorization).toBe(`Bearer ${legacyToken}`);
  });
});
