import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { arg, fmt, median } from './lib.js';

/**
 * npm run bench:op-transport [-- --ops 200000 --rounds 5]
 *
 * What an accept op costs to cross to the SQLite writer thread (postMessage, then the receiving
 * side's deserialisation), by how the raw body travels: as a Uint8Array (what hookd did) or as a
 * latin1 string of the same bytes (what request-store.ts does below 64 KiB). A-B rounds, batches of
 * 1 and 16 ops per message (the writer client sends what one event-loop turn collected).
 */
const ops = Number(arg('ops', '200000'));
const rounds = Math.max(1, Number(arg('rounds', '5')));

const raw = Buffer.from(JSON.stringify({ event: 'order.created', id: 'ord_0123456789', total: 129.95, currency: 'EUR', customer: { id: 'cus_42', tier: 'gold' }, x: 'abc' }));
const headers = JSON.stringify({ host: '127.0.0.1:3000', 'content-type': 'application/json', 'content-length': String(raw.length), connection: 'keep-alive' });

function acceptArgs(i: number, body: Uint8Array | string) {
  return {
    id: `01a243ba-2c03-756f-915a-1ebd3de3${String(i % 10_000).padStart(4, '0')}`,
    flowId: 'bench',
    receivedAt: 1_764_900_000_000.125 + i,
    method: 'POST',
    path: '',
    query: '{}',
    headers,
    body: null,
    bodyIsRaw: true,
    contentType: 'application/json',
    clientIp: '127.0.0.1',
    attachments: null,
    rawAttachment: null,
    cloudEvent: null,
    cloudEvents: null,
    attachmentIds: [],
    rawBody: body,
    maxAttempts: 5,
  };
}

const { port1, port2 } = new MessageChannel();

/** µs per op: build the args as accept() does, post them, receive them on the other port. */
function measure(body: 'uint8array' | 'latin1', batch: number): number {
  const t0 = performance.now();
  for (let i = 0; i < ops; i += batch) {
    const calls: unknown[] = [];
    for (let j = 0; j < batch; j++) calls.push([i + j, 'acceptRequest', acceptArgs(i + j, body === 'latin1' ? raw.toString('latin1') : new Uint8Array(raw))]);
    port1.postMessage({ t: 'ops', ops: calls });
    const m = receiveMessageOnPort(port2);
    if (m === undefined) throw new Error('message lost');
  }
  return ((performance.now() - t0) * 1000) / ops;
}

console.log(`bench:op-transport — ${fmt(ops)} accept ops per measurement, ${rounds} A-B rounds\n`);
for (const batch of [1, 16]) {
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let typed: number;
    let text: number;
    if (r % 2 === 0) {
      typed = measure('uint8array', batch);
      text = measure('latin1', batch);
    } else {
      text = measure('latin1', batch);
      typed = measure('uint8array', batch);
    }
    ratios.push(text / typed);
    console.log(`batch ${batch}: Uint8Array ${fmt(typed, 2)} µs/op   latin1 string ${fmt(text, 2)} µs/op`);
  }
  console.log(`batch ${batch}: ratio latin1 ÷ Uint8Array (median): ${fmt(median(ratios), 2)}\n`);
}
port1.close();
