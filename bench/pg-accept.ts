import { randomBytes } from 'node:crypto';
import { AcceptBatch, BUCKETS, type AcceptRow } from '../src/store/postgres/accept-batch.js';
import { PgDatabase } from '../src/store/postgres/database.js';
import { migrate } from '../src/store/postgres/migrate.js';
import type { ReceivedMessage } from '../src/core/message.js';
import { uuidv7 } from '../src/core/ids.js';
import { requestColumns } from '../src/store/rows.js';
import { arg, cpuSeconds, DATABASE_URL, fmt, median, pgExec } from './lib.js';

/**
 * npm run bench:pg-accept [-- --rows 30000 --rounds 4 --max-batch 48]
 *
 * What PostgreSQL's accept statement costs per stored request, by how batches are padded to a
 * prepared statement size: powers of two (what hookd did) vs BUCKETS (accept-batch.ts). Each
 * measurement stores `--rows` webhook-sized requests (130-byte JSON body, five headers) in batches
 * of 1…`--max-batch` rows (the same pseudo-random sizes for both), one statement at a time on one
 * connection, into a fresh schema. Prints µs per row of the client (this process) and of the server
 * (the connection's backend process, from /proc), A-B then B-A, and the medians of the ratios.
 */
const rows = Number(arg('rows', '30000'));
const rounds = Math.max(1, Number(arg('rounds', '4')));
const maxBatch = Number(arg('max-batch', '48'));
const POWERS_OF_TWO = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
const BODY = Buffer.from(JSON.stringify({ event: 'order.created', id: 'ord_0123456789', total: 129.95, currency: 'EUR', customer: { id: 'cus_42', tier: 'gold' }, x: 'abc' }));
const HEADERS = { host: '127.0.0.1:3000', 'content-type': 'application/json', 'content-length': String(BODY.length), connection: 'keep-alive', 'user-agent': 'autocannon' };

interface Cost {
  clientUs: number;
  serverUs: number;
  rowsPerSecond: number;
}

/** Batch sizes: a fixed sequence (xorshift), so both paddings store the same batches. */
function batchSizes(): number[] {
  const sizes: number[] = [];
  let x = 0x9e3779b9;
  for (let left = rows; left > 0; ) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const n = Math.min(left, 1 + ((x >>> 0) % maxBatch));
    sizes.push(n);
    left -= n;
  }
  return sizes;
}

function acceptRow(): AcceptRow {
  const m: ReceivedMessage = {
    id: uuidv7(),
    flowId: 'bench',
    receivedAt: Date.now() + 0.25,
    method: 'POST',
    path: '',
    query: {},
    headers: HEADERS,
    contentType: 'application/json',
    body: JSON.parse(BODY.toString()) as unknown,
    rawBody: BODY,
    clientIp: '127.0.0.1',
  };
  return { id: m.id, flowId: m.flowId, receivedAt: m.receivedAt, method: m.method, path: JSON.stringify(m.path), ...requestColumns(m), rawBody: m.rawBody, jobId: uuidv7(), maxAttempts: 5 };
}

async function measure(buckets: readonly number[], sizes: readonly number[]): Promise<Cost> {
  const schema = `hookd_bench_accept_${randomBytes(4).toString('hex')}`;
  const db = new PgDatabase({ connectionString: DATABASE_URL, schema, poolMax: 1 });
  try {
    await migrate(db);
    const batch = new AcceptBatch(db, 'outbox', 0, buckets);
    const { rows: who } = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const backend = who[0]!.pid;
    // Warm-up: prepare the statement texts used below outside the measurement.
    for (const n of new Set(sizes)) await batch.run(Array.from({ length: n }, acceptRow));
    const batches = sizes.map((n) => Array.from({ length: n }, acceptRow));
    const serverFrom = cpuSeconds(backend) ?? NaN;
    const clientFrom = process.cpuUsage();
    const t0 = performance.now();
    for (const b of batches) {
      const outcomes = await batch.run(b);
      if (!outcomes.every((o) => o.ok && o.value === 'stored')) throw new Error('a row was not stored');
    }
    const seconds = (performance.now() - t0) / 1000;
    const client = process.cpuUsage(clientFrom);
    return {
      clientUs: (client.user + client.system) / rows,
      serverUs: (((cpuSeconds(backend) ?? NaN) - serverFrom) * 1e6) / rows,
      rowsPerSecond: rows / seconds,
    };
  } finally {
    await db.close();
    await pgExec(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  }
}

const sizes = batchSizes();
const padded = (buckets: readonly number[]) => sizes.reduce((s, n) => s + buckets.find((b) => b >= n)!, 0) / rows;
console.log(
  `bench:pg-accept — ${fmt(rows)} requests in ${fmt(sizes.length)} batches of 1…${maxBatch} rows, ${rounds} A-B rounds\n` +
    `rows bound per stored row: powers of two ${fmt(padded(POWERS_OF_TWO), 2)}, BUCKETS ${fmt(padded(BUCKETS), 2)}\n`,
);
const line = (name: string, c: Cost) =>
  `${name.padEnd(16)} client ${fmt(c.clientUs, 1).padStart(5)} µs/row   server ${fmt(c.serverUs, 1).padStart(5)} µs/row   ${fmt(c.rowsPerSecond).padStart(6)} rows/s`;
const serverRatios: number[] = [];
const clientRatios: number[] = [];
for (let r = 0; r < rounds; r++) {
  const got: Partial<Record<'pow2' | 'buckets', Cost>> = {};
  for (const which of r % 2 === 0 ? (['pow2', 'buckets'] as const) : (['buckets', 'pow2'] as const)) {
    got[which] = await measure(which === 'pow2' ? POWERS_OF_TWO : BUCKETS, sizes);
  }
  console.log(`round ${r + 1}\n${line('powers of two', got.pow2!)}\n${line('BUCKETS', got.buckets!)}`);
  serverRatios.push(got.buckets!.serverUs / got.pow2!.serverUs);
  clientRatios.push(got.buckets!.clientUs / got.pow2!.clientUs);
}
console.log(`\nBUCKETS ÷ powers of two (medians): server CPU per row ${fmt(median(serverRatios), 2)}, client CPU per row ${fmt(median(clientRatios), 2)}`);
