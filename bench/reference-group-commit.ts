import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isMainThread, parentPort, receiveMessageOnPort, Worker, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import Fastify from 'fastify';
import { uuidv7 } from '../src/core/ids.js';

/**
 * The durability reference for bench:ingest: a hand-made group commit with none of hookd's features
 * (no flows, auth, parsers, metrics, runner). node:http reads the body and parses the JSON; a worker
 * thread owns SQLite (WAL, synchronous=FULL) and commits everything that arrived while the previous
 * commit ran in ONE transaction (a request row and a queue row each); every answer waits for the
 * commit that holds its request. What this reaches is the price of "never acknowledge what is not
 * stored" on this machine; what hookd reaches below it is the price of hookd's features.
 *
 * REFERENCE_HTTP=fastify: the same group commit behind a fastify 5 route (the raw bytes read as a
 * buffer, then JSON.parse, as hookd must keep them): the ceiling of the stack the issues prescribe,
 * before any hookd feature.
 *
 * Prints `LISTENING <port>` when ready.
 */
type Row = [id: string, flowId: string, receivedAt: number, headers: string, raw: Uint8Array];

if (isMainThread) {
  const dir = mkdtempSync(path.join(tmpdir(), 'hookd-reference-'));
  const writer = new Worker(new URL(import.meta.url), { workerData: { file: path.join(dir, 'reference.db') } });
  const waiting = new Map<string, () => void>();
  let batch: Row[] = [];
  let scheduled = false;
  writer.on('message', (ids: string[]) => {
    for (const id of ids) {
      waiting.get(id)?.();
      waiting.delete(id);
    }
  });
  const flush = (): void => {
    scheduled = false;
    writer.postMessage(batch);
    batch = [];
  };

  /** Resolves once the transaction holding this request committed. */
  const commitRow = (row: Row): Promise<void> =>
    new Promise((resolve) => {
      waiting.set(row[0], resolve);
      batch.push(row);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
  const answer = (id: string): string => JSON.stringify({ requestId: id, message: 'thank you' });

  const close = await (process.env.REFERENCE_HTTP === 'fastify' ? serveWithFastify(commitRow, answer) : serveWithNodeHttp(commitRow, answer));
  process.on('SIGTERM', () => {
    close();
    void writer.terminate().then(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    });
  });
} else {
  const db = new Database((workerData as { file: string }).file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(`CREATE TABLE requests (id TEXT PRIMARY KEY, flow_id TEXT NOT NULL, received_at REAL NOT NULL,
                                  headers TEXT NOT NULL, raw_body BLOB NOT NULL);
           CREATE TABLE jobs (id TEXT PRIMARY KEY, request_id TEXT NOT NULL, run_at REAL NOT NULL) WITHOUT ROWID;
           CREATE INDEX jobs_run_at ON jobs (run_at);`);
  const insertRequest = db.prepare('INSERT INTO requests VALUES (?, ?, ?, ?, ?)');
  const insertJob = db.prepare('INSERT INTO jobs VALUES (?, ?, ?)');
  const commit = db.transaction((rows: Row[]) => {
    for (const r of rows) {
      insertRequest.run(r);
      insertJob.run(uuidv7(), r[0], r[2]);
    }
  });
  const port = parentPort!;
  port.on('message', (first: Row[]) => {
    // Everything that arrived while the previous transaction committed joins this one.
    const rows = [...first];
    for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) rows.push(...(m.message as Row[]));
    commit(rows);
    port.postMessage(rows.map((r) => r[0]));
  });
}

type Commit = (row: Row) => Promise<void>;

function listening(port: number): void {
  process.stdout.write(`LISTENING ${port}\n`);
}

async function serveWithNodeHttp(commit: Commit, answer: (id: string) => string): Promise<() => void> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      try {
        JSON.parse(raw.toString('utf8'));
      } catch {
        res.writeHead(400).end();
        return;
      }
      const id = uuidv7();
      void commit([id, req.url ?? '', Date.now(), JSON.stringify(req.headers), new Uint8Array(raw)]).then(() => {
        const out = answer(id);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
        res.end(out);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (addr && typeof addr === 'object') listening(addr.port);
  return () => server.close();
}

async function serveWithFastify(commit: Commit, answer: (id: string) => string): Promise<() => void> {
  const app = Fastify({ logger: false, bodyLimit: 10 * 1024 * 1024 });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.post<{ Params: { flowId: string } }>('/hook/:flowId', async (request, reply) => {
    const raw = request.body as Buffer;
    try {
      JSON.parse(raw.toString('utf8'));
    } catch {
      return reply.code(400).send();
    }
    const id = uuidv7();
    await commit([id, request.params.flowId, Date.now(), JSON.stringify(request.headers), new Uint8Array(raw)]);
    return reply.type('application/json').send(answer(id));
  });
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  listening(Number(new URL(address).port));
  return () => void app.close();
}
