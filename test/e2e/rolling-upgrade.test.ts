/**
 * A rolling upgrade (PostgreSQL): instances of an earlier hookd keep running on the database while
 * upgraded ones start. An upgraded instance's start wrote every FLOWS_DIR flow again, which sealed
 * the plain credential headers of http steps stored by the earlier build — and the earlier
 * instances, which cannot open sealed values, sent the sealed text as the header
 * ("Authorization: v1:…", found upgrading from db92773 with an instance of each running: every
 * call the earlier instance made went out that way). Instances now record the schema version their
 * build knows with their beats; while earlier ones run, FLOWS_DIR flows that did not change are
 * left as stored, and sealed at a start with none of them running.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { afterAll, expect, it } from 'vitest';
import type { Flow, HttpStepDef } from '../../src/core/flow.js';
import { everyBackend } from '../helpers/every-backend.js';
import { startHookd, tempDir } from '../helpers/hookd.js';

const { backends, cleanUp } = everyBackend('rolling');
const env = backends.find(([name]) => name === 'PostgreSQL')![1];
afterAll(() => cleanUp([]));

const FLOW: Omit<Flow, 'createdAt' | 'updatedAt'> = {
  id: 'file-flow',
  name: 'file-flow',
  status: 'started',
  trigger: { type: 'webhook' },
  steps: [{ id: 'call', type: 'http', url: 'http://127.0.0.1:3999/in', headers: { authorization: 'Bearer plain-from-the-file' } }],
};

it('FLOWS_DIR flows stored by an earlier build stay readable to its running instances; sealed once none runs', async () => {
  const flowsDir = tempDir();
  mkdirSync(flowsDir, { recursive: true });
  writeFileSync(path.join(flowsDir, 'file-flow.json'), JSON.stringify(FLOW));
  // The flow as the earlier build stored it from the same file: its header in plain.
  const first = await startHookd({ ...env, WORKER_CONCURRENCY: '0' });
  const now = new Date().toISOString();
  expect(await first.app.backend.flows.put({ ...FLOW, createdAt: now, updatedAt: now })).toBe(true);
  await first.close();
  const storedHeader = async (): Promise<string> => {
    const s = await startHookd({ ...env, WORKER_CONCURRENCY: '0' });
    try {
      return ((await s.app.backend.flows.get('file-flow'))!.steps[0] as HttpStepDef).headers!.authorization!;
    } finally {
      await s.close();
    }
  };

  // An instance of the earlier build beats on the database (its row, as that build writes it).
  const admin = new pg.Client({ connectionString: env.DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(
      `INSERT INTO "${env.DATABASE_SCHEMA}".instances (id, seen_at, runs_flows, queue) VALUES ('instance-earlier', extract(epoch from now()) * 1000 + 600000, true, NULL)`,
    );
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
    const upgraded = await startHookd({ ...env, FLOWS_DIR: flowsDir, WORKER_CONCURRENCY: '0' }, { logger });
    await upgraded.close();
    expect(await storedHeader()).toBe('Bearer plain-from-the-file');
    const said = lines.map((l) => JSON.parse(l) as { msg: string; flowIds?: string[]; instances?: number }).find((l) => l.msg.startsWith('FLOWS_DIR: 1 running instance of an earlier hookd'));
    expect(said, lines.join('\n')).toMatchObject({ flowIds: ['file-flow'], instances: 1 });

    // A changed file is still written (the operator changed it), sealed.
    writeFileSync(path.join(flowsDir, 'file-flow.json'), JSON.stringify({ ...FLOW, name: 'renamed' }));
    await (await startHookd({ ...env, FLOWS_DIR: flowsDir, WORKER_CONCURRENCY: '0' })).close();
    expect(await storedHeader()).toMatch(/^v1:/);

    // Back to plain, as the earlier build would store it; once no earlier instance runs, the next start seals it.
    const s = await startHookd({ ...env, WORKER_CONCURRENCY: '0' });
    await s.app.backend.flows.put({ ...FLOW, name: 'renamed', createdAt: now, updatedAt: new Date().toISOString() });
    await s.close();
    await admin.query(`DELETE FROM "${env.DATABASE_SCHEMA}".instances WHERE id = 'instance-earlier'`);
    await (await startHookd({ ...env, FLOWS_DIR: flowsDir, WORKER_CONCURRENCY: '0' })).close();
    expect(await storedHeader()).toMatch(/^v1:/);
  } finally {
    await admin.end();
    rmSync(flowsDir, { recursive: true, force: true });
  }
}, 60_000);
