import net from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { startHookd } from '../helpers/hookd.js';

/**
 * A request that reaches a closing hookd on a connection still open (keep-alive, pipelined) is
 * refused like any 503 of hookd: its error shape (SHUTTING_DOWN), Retry-After for the sender, one
 * log line per window (not fastify's info line per request).
 */
it('a request arriving while shutting down: 503 SHUTTING_DOWN with Retry-After, not logged per request', async () => {
  const lines: Array<Record<string, any>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, any>);
      cb();
    },
  });
  const h = await startHookd({ WORKER_CONCURRENCY: '0' }, { logger: pino({ level: 'info' }, stream) });
  expect((await h.api('PUT', '/api/flows/f', { steps: [] })).status).toBe(201);
  const { port } = new URL(h.url);
  const socket = net.connect(Number(port), '127.0.0.1');
  await new Promise<void>((r) => socket.once('connect', () => r()));
  let received = '';
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  // The first request is in flight (half its body sent) when the shutdown begins; the second one
  // follows it on the same connection.
  const body = '{"n":1}';
  socket.write(`POST /hook/f HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n{"n"`);
  await new Promise((r) => setTimeout(r, 100));
  const closed = h.app.close();
  await new Promise((r) => setTimeout(r, 50));
  socket.write(`:1}POST /hook/f HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
  await new Promise<void>((r) => socket.once('close', () => r()));
  await closed;
  const answers = received.split(/(?=HTTP\/1\.1 )/);
  expect(answers).toHaveLength(2);
  expect(answers[0]).toMatch(/^HTTP\/1\.1 200/);
  expect(answers[1]).toMatch(/^HTTP\/1\.1 503/);
  expect(answers[1]).toMatch(/\r\nretry-after: \d+\r\n/i);
  expect(JSON.parse(answers[1]!.slice(answers[1]!.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'SHUTTING_DOWN' });
  expect(lines.filter((l) => /refusing to accept new requests/.test(l.msg))).toEqual([]);
  expect(lines.filter((l) => /^answered 503 SHUTTING_DOWN/.test(l.msg))).toHaveLength(1);
});
