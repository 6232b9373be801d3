/**
 * The PostgreSQL queue (DATABASE_URL without RABBITMQ_URI) with three instances, one SIGKILLed
 * under load and not restarted: every request any instance acknowledged ends with exactly one
 * completed execution, the killed instance's leased jobs included. Its leases would hold those
 * jobs for QUEUE_LEASE (10 min here); the survivors' sweep ends them once the instance registry
 * counts the dead one as gone (max(3 x FLOW_REFRESH, 5 s)), so all is done within seconds.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { everyBackend } from '../helpers/every-backend.js';
import { adminCall, type ChildHookd, spawnHookd, tempDir, waitFor } from '../helpers/hookd.js';

const { backends, cleanUp } = everyBackend('pgcrash');
const env = backends.find(([n]) => n === 'PostgreSQL')![1];
const TOKEN = randomBytes(16).toString('hex');
const children: ChildHookd[] = [];

afterAll(async () => {
  for (const c of children) c.proc.kill('SIGKILL');
  await cleanUp([]);
});

/** POSTs over `urls` in turn, `concurrency` at once, until stop(); the request ids of the 200s. */
function startLoad(urls: string[], concurrency: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency * urls.length });
  const acked: string[] = [];
  let refused = 0;
  let running = true;
  let seq = 0;
  const one = (url: string, i: number) =>
    new Promise<void>((resolve) => {
      const req = http.request(`${url}/hook/crashy`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          if (res.statusCode === 200) acked.push((JSON.parse(body) as { requestId: string }).requestId);
          else refused++;
          resolve();
        });
      });
      req.on('error', () => {
        refused++;
        setTimeout(resolve, 50);
      });
      req.end(JSON.stringify({ n: i, total: i % 100 }));
    });
  const lanes = Array.from({ length: concurrency }, async () => {
    while (running) {
      const i = seq++;
      await one(urls[i % urls.length]!, i);
    }
  });
  return {
    acked,
    refused: () => refused,
    async stop() {
      running = false;
      await Promise.all(lanes);
      agent.destroy();
    },
  };
}

it('three instances on the PostgreSQL queue, one SIGKILLed under load: every 200 ends with exactly one completed execution, within seconds', { timeout: 120_000 }, async () => {
  const start = () =>
    spawnHookd({ LISTEN_PORT: '0', DATA_DIR: tempDir(), HOOKD_ADMIN_TOKEN: TOKEN, FLOW_REFRESH: '500ms', QUEUE_LEASE: '10m', LOG_LEVEL: 'info', ...env });
  const first = await start();
  children.push(first);
  const steps = [
    { id: 'shape', type: 'transform', expression: '{ "n": body.n, "double": body.total * 2 }' },
    { id: 'note', type: 'log', level: 'debug' },
  ];
  expect((await adminCall(first.url, TOKEN, 'PUT', '/api/flows/crashy', { steps })).status).toBe(201);
  children.push(await start(), await start());
  const [a, b, victim] = children as [ChildHookd, ChildHookd, ChildHookd];
  const load = startLoad([a.url, b.url, victim.url], 32);
  let killedAt = 0;
  try {
    await waitFor(() => load.acked.length >= 1500, 60_000, 5);
    victim.proc.kill('SIGKILL');
    killedAt = Date.now();
    await victim.exited;
    await waitFor(() => load.acked.length >= 3000, 60_000, 5);
  } finally {
    await load.stop();
  }
  const acked = [...load.acked];
  expect(new Set(acked).size).toBe(acked.length);
  const db = new pg.Client({ connectionString: env.DATABASE_URL });
  await db.connect();
  try {
    const schema = env.DATABASE_SCHEMA!;
    const unfinished = async () => {
      const { rows } = await db.query<{ n: number }>(
        `SELECT count(*)::integer AS n FROM unnest($1::text[]) AS r(id)
         WHERE NOT EXISTS (SELECT 1 FROM "${schema}".executions e WHERE e.request_id = r.id AND e.status = 'completed')`,
        [acked],
      );
      return rows[0]!.n;
    };
    // Done: every acknowledged request completed, and no job is left (the victim's leased ones
    // included: some belong to requests it committed but could not answer).
    const jobsLeft = async () => (await db.query<{ n: number }>(`SELECT count(*)::integer AS n FROM "${schema}".jobs`)).rows[0]!.n;
    await waitFor(async () => (await unfinished()) === 0 && (await jobsLeft()) === 0, 40_000, 200);
    const doneAfterKill = Date.now() - killedAt;
    // A duplicate delivery still on its way would show up as a second execution.
    await new Promise((r) => setTimeout(r, 500));
    const { rows: execs } = await db.query<{ request_id: string; status: string }>(
      `SELECT request_id, status FROM "${schema}".executions WHERE request_id = ANY($1::text[])`,
      [acked],
    );
    const { rows: stored } = await db.query<{ n: number }>(`SELECT count(*)::integer AS n FROM "${schema}".requests WHERE id = ANY($1::text[])`, [acked]);
    // Every request stored, acknowledged or not, ran exactly once.
    const { rows: runs } = await db.query<{ request_id: string; n: number; done: number }>(
      `SELECT r.id AS request_id, count(e.id)::integer AS n, (count(e.id) FILTER (WHERE e.status = 'completed'))::integer AS done
       FROM "${schema}".requests r LEFT JOIN "${schema}".executions e ON e.request_id = r.id GROUP BY r.id`,
    );
    console.log(
      `pg-queue-crash: ${acked.length} acknowledged, ${load.refused()} refused or cut off; ${runs.length - acked.length} more stored unanswered; every job done ${doneAfterKill} ms after the kill (QUEUE_LEASE 10 min)`,
    );
    expect(stored[0]!.n).toBe(acked.length);
    expect(execs).toHaveLength(acked.length);
    expect(execs.every((e) => e.status === 'completed')).toBe(true);
    expect(runs.filter((r) => r.n !== 1 || r.done !== 1)).toEqual([]);
    expect(runs.length).toBeGreaterThanOrEqual(acked.length);
    // The survivors ran the victim's leased jobs once the registry dropped it, not after their lease.
    expect(doneAfterKill).toBeLessThan(30_000);
  } finally {
    await db.end();
  }
});
