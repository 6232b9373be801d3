import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FsAttachmentStore } from '../src/attachments/fs-store.js';
import { isHookdError } from '../src/core/errors.js';
import type { AttachmentRef } from '../src/core/message.js';
import { parsePayload } from '../src/ingress/parsers/index.js';
import { parseMediaType } from '../src/ingress/parsers/media-type.js';
import { arg, fmt, percentile, startProcess } from './lib.js';

/**
 * npm run build && node dist/bench/upload.js [-- --size-mb 1024 --concurrent 100 --each-mb 10]
 *
 * Uploads through the multipart parser into the fs attachment store (fsync on), in a node:http
 * server in a child process:
 *   (a) one 1 GB multipart upload, generated on the fly (never from disk), Content-Length known;
 *   (b) the same size as one binary body (application/octet-stream: one attachment, written once);
 *   (c) 100 concurrent 10 MB multipart uploads.
 * The baseline, measured in the same run against the same child: the same requests drained by a
 * handler that only counts bytes. Prints MB/s, the ratio to the baseline and the server's RSS
 * growth (peak during the run − RSS before it; target ≤ 64 MB for the 1 GB upload).
 */
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Server (child process): POST /upload → parser + store; POST /drain → count bytes; GET /mem.
// ---------------------------------------------------------------------------------------------
async function server(): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'hookd-bench-upload-'));
  const store = new FsAttachmentStore(path.join(dataDir, 'attachments'));
  let base = process.memoryUsage().rss;
  let peak = base;
  setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 10).unref();

  const srv = http.createServer((req, res) => {
    const answer = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/mem' && req.method === 'GET') return answer(200, { base, peak, rss: process.memoryUsage().rss });
    if (req.url === '/mem/reset' && req.method === 'POST') {
      global.gc?.();
      base = peak = process.memoryUsage().rss;
      return answer(200, { base });
    }
    if (req.url === '/drain') {
      let bytes = 0;
      req.on('data', (c: Buffer) => (bytes += c.length));
      req.on('end', () => answer(200, { bytes }));
      return;
    }
    if (req.url === '/upload') {
      const contentType = req.headers['content-type'] ?? 'application/octet-stream';
      let bytes = 0;
      parsePayload({
        stream: req,
        contentType,
        media: parseMediaType(contentType),
        headers: req.headers,
        payloadSizeLimit: 10 * MiB,
        attachments: store,
        attachmentSizeLimit: 2048 * MiB,
        onChunk: (c) => (bytes += c.length),
      }).then(
        async (payload) => {
          answer(200, { bytes, attachments: payload.attachments?.length ?? 0, raw: payload.rawAttachment?.size ?? payload.rawBody.length });
          // Keep the disk from filling up across runs: the bench measures ingestion only.
          const ids = [...(payload.attachments ?? []), ...(payload.rawAttachment ? [payload.rawAttachment] : [])].map((r: AttachmentRef) => r.id);
          await store.delete(ids);
        },
        (err: unknown) => {
          answer(isHookdError(err) ? err.statusCode : 500, { error: (err as Error).message });
          req.resume();
        },
      );
      return;
    }
    answer(404, {});
  });
  srv.listen(0, '127.0.0.1', () => {
    process.stdout.write(`LISTENING ${(srv.address() as AddressInfo).port}\n`);
  });
  const stop = () => {
    srv.close();
    srv.closeAllConnections();
    rmSync(dataDir, { recursive: true, force: true });
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// ---------------------------------------------------------------------------------------------
// Client (this process): bodies generated on the fly from one reused 1 MiB block.
// ---------------------------------------------------------------------------------------------
const BOUNDARY = '----hookdBenchBoundary7MA4YWxkTrZu0gW';
const BLOCK = Buffer.alloc(MiB);
for (let i = 0; i < BLOCK.length; i++) BLOCK[i] = (i * 2654435761) >>> 24;

function multipartParts(fileBytes: number): { head: Buffer; tail: Buffer; length: number } {
  const head = Buffer.from(
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="event"\r\n\r\nupload.bench\r\n` +
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="bench.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
  return { head, tail, length: head.length + fileBytes + tail.length };
}

function upload(port: number, route: string, fileBytes: number, binary = false): Promise<{ ms: number; status: number }> {
  const { head, tail, length } = binary ? { head: Buffer.alloc(0), tail: Buffer.alloc(0), length: fileBytes } : multipartParts(fileBytes);
  const contentType = binary ? 'application/octet-stream' : `multipart/form-data; boundary=${BOUNDARY}`;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: route,
        method: 'POST',
        headers: { 'content-type': contentType, 'content-length': String(length) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ ms: performance.now() - started, status: res.statusCode ?? 0 }));
      },
    );
    req.on('error', reject);
    void (async () => {
      req.write(head);
      for (let sent = 0; sent < fileBytes; sent += BLOCK.length) {
        const block = sent + BLOCK.length <= fileBytes ? BLOCK : BLOCK.subarray(0, fileBytes - sent);
        if (!req.write(block)) await new Promise((r) => req.once('drain', r));
      }
      req.end(tail);
    })();
  });
}

async function json(port: number, method: string, p: string): Promise<any> {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, { method });
  return res.json();
}

interface Run {
  mbps: number;
  seconds: number;
  rssGrowthMb: number;
  p50?: number;
  p99?: number;
  failures: number;
}

async function measure(port: number, route: string, count: number, eachBytes: number, binary = false): Promise<Run> {
  await json(port, 'POST', '/mem/reset');
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: count }, () => upload(port, route, eachBytes, binary)));
  const seconds = (performance.now() - started) / 1000;
  const mem = await json(port, 'GET', '/mem');
  const latencies = results.map((r) => r.ms);
  return {
    mbps: (count * eachBytes) / MiB / seconds,
    seconds,
    rssGrowthMb: (mem.peak - mem.base) / MiB,
    failures: results.filter((r) => r.status !== 200).length,
    ...(count > 1 ? { p50: percentile(latencies, 50), p99: percentile(latencies, 99) } : {}),
  };
}

function line(name: string, r: Run, baseline?: Run): string {
  const ratio = baseline ? `   ${fmt(r.mbps / baseline.mbps, 2)}× baseline` : '';
  const lat = r.p50 !== undefined ? `   p50 ${fmt(r.p50 / 1000, 2)} s  p99 ${fmt(r.p99! / 1000, 2)} s` : '';
  const fail = r.failures > 0 ? `   FAILURES ${r.failures}` : '';
  return `${name.padEnd(34)} ${fmt(r.mbps).padStart(6)} MB/s  ${fmt(r.seconds, 1).padStart(6)} s   server RSS +${fmt(r.rssGrowthMb, 1)} MB${lat}${ratio}${fail}`;
}

async function main(): Promise<void> {
  const sizeMb = Number(arg('size-mb', '1024'));
  const concurrent = Number(arg('concurrent', '100'));
  const eachMb = Number(arg('each-mb', '10'));
  console.log(
    `bench:upload — multipart/form-data through the streaming parser into the fs attachment store (fsync on),\n` +
      `node:http server in a child process, bodies generated on the fly; baseline = same requests drained.\n`,
  );
  const child = await startProcess(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--server'], {}, /LISTENING (\d+)/);
  const port = Number(child.match[1]);
  try {
    await measure(port, '/upload', 4, 16 * MiB); // warm-up
    const baseOne = await measure(port, '/drain', 1, sizeMb * MiB);
    const one = await measure(port, '/upload', 1, sizeMb * MiB);
    const binary = await measure(port, '/upload', 1, sizeMb * MiB, true);
    const baseMany = await measure(port, '/drain', concurrent, eachMb * MiB);
    const many = await measure(port, '/upload', concurrent, eachMb * MiB);
    console.log(line(`baseline: 1 × ${sizeMb} MB drained`, baseOne));
    console.log(line(`1 × ${sizeMb} MB upload`, one, baseOne));
    console.log(line(`1 × ${sizeMb} MB binary body (1 write)`, binary, baseOne));
    console.log(line(`baseline: ${concurrent} × ${eachMb} MB drained`, baseMany));
    console.log(line(`${concurrent} × ${eachMb} MB concurrent uploads`, many, baseMany));
    const target = 64;
    console.log(
      `\nRSS growth for the ${sizeMb} MB upload: ${fmt(one.rssGrowthMb, 1)} MB (target ≤ ${target} MB: ${one.rssGrowthMb <= target ? 'met' : 'MISSED'}).` +
        `\nA multipart upload writes its bytes twice (the file part, and the raw body kept for signatures and replay);` +
        `\na binary body once (the attachment is the raw body). Writes are fsynced before the answer.`,
    );
  } finally {
    await child.stop();
  }
}

if (process.argv.includes('--server')) void server();
else
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
