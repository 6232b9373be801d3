import { readdirSync, readFileSync } from 'node:fs';
import { openRabbitMqQueue, type RabbitMqQueue } from '../src/queue/rabbitmq/index.js';
import { arg, cpuSecondsOf, fmt, median } from './lib.js';

/**
 * npm run bench:many-flows [-- --flows 500 --rounds 5]
 *
 * What a queue per flow costs with many flows (docs/distributed.md), on one broker: declaring N
 * flow queues, a consumer attaching to all of them, stats() (what /api/stats and /metrics ask),
 * and the 30 s topology refresh — A/B in turn: every flow queue looked at and declared again each
 * time (how it was) against 200 of them per refresh, in turn (refreshTopology). Prints wall time
 * and the broker's CPU (beam.smp, from /proc) per operation.
 *
 * Every quorum queue takes file handles on the broker: a RabbitMQ 3.10 node with 1,024 open files
 * stopped answering at about 1,000 queues. The bench refuses more than 600 flows unless the
 * broker's soft limit is at least 4,096.
 */
const RABBITMQ_URI = process.env.RABBITMQ_URI ?? 'amqp://guest:guest@127.0.0.1:5672';
const flows = Number(arg('flows', '500'));
const rounds = Number(arg('rounds', '5'));
const quiet = { warn: () => {}, error: () => {}, info: () => {} };

/** The broker's soft open-files limit, when it runs on this machine. */
function brokerOpenFiles(): number | undefined {
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('rabbit')) continue;
      if (!readFileSync(`/proc/${pid}/stat`, 'utf8').includes('(beam.smp)')) continue;
      const line = readFileSync(`/proc/${pid}/limits`, 'utf8')
        .split('\n')
        .find((l) => l.startsWith('Max open files'));
      const soft = Number(line?.split(/\s+/)[3]);
      if (Number.isFinite(soft)) return soft;
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return undefined;
}

function line(label: string, r: { ms: number; brokerMs: number }, note = ''): string {
  return `${label.padEnd(40)}${fmt(r.ms).padStart(8)} ms   broker CPU ${fmt(r.brokerMs).padStart(7)} ms${note}`;
}

async function timed(what: () => Promise<unknown>): Promise<{ ms: number; brokerMs: number }> {
  const cpu0 = cpuSecondsOf(['beam.smp']) ?? 0;
  const t0 = performance.now();
  await what();
  return { ms: performance.now() - t0, brokerMs: ((cpuSecondsOf(['beam.smp']) ?? 0) - cpu0) * 1000 };
}

const limit = brokerOpenFiles();
if (flows > 600 && (limit === undefined || limit < 4_096)) {
  console.error(`bench:many-flows: the broker's open-files limit is ${limit ?? 'unknown'}; ${flows} quorum queues could hang it. Raise it (ulimit -n before rabbitmq-server) or use --flows 600 or fewer.`);
  process.exit(2);
}

const prefix = `hookd-bench-flows-${process.pid}`;
const q: RabbitMqQueue = await openRabbitMqQueue({ url: RABBITMQ_URI, prefix, logger: quiet });
const internals = q as unknown as { declareTopology(flowIds?: Iterable<string>): Promise<void>; refreshTopology(): Promise<void> };
try {
  console.log(`bench:many-flows — ${flows} flows, ${rounds} rounds, RabbitMQ ${new URL(RABBITMQ_URI).host} (broker open files: ${limit ?? 'unknown'})\n`);
  const ids = Array.from({ length: flows }, (_, i) => ({ id: `f${i}`, started: true }));
  const declared = await timed(async () => {
    q.watchFlows(ids);
    while (q.flowQueueNames.length < flows) await new Promise((r) => setTimeout(r, 5));
  });
  console.log(line(`declare ${flows} new flow queues`, declared));
  const consumer = q.consume(async () => {}, { concurrency: 64 });
  const attached = await timed(async () => {
    const c = consumer as unknown as { consuming: string[] };
    while (c.consuming.length < flows) await new Promise((r) => setTimeout(r, 5));
  });
  console.log(line('a consumer attaching to all of them', attached));

  const statsRuns: Array<{ ms: number; brokerMs: number }> = [];
  const all: Array<{ ms: number; brokerMs: number }> = [];
  const inTurn: Array<{ ms: number; brokerMs: number }> = [];
  for (let r = 0; r < rounds; r++) {
    statsRuns.push(await timed(() => q.stats()));
    // How a refresh was: every flow queue's passive declare (what stats() asks), then every one declared again.
    const runAll = () => timed(async () => {
      await q.stats();
      await internals.declareTopology();
    });
    const runTurn = () => timed(() => internals.refreshTopology());
    if (r % 2 === 0) {
      all.push(await runAll());
      inTurn.push(await runTurn());
    } else {
      inTurn.push(await runTurn());
      all.push(await runAll());
    }
  }
  const med = (xs: Array<{ ms: number; brokerMs: number }>) => ({ ms: median(xs.map((x) => x.ms)), brokerMs: median(xs.map((x) => x.brokerMs)) });
  const s = med(statsRuns);
  const a = med(all);
  const t = med(inTurn);
  console.log(line("stats() (every flow queue's count)", s, '   (median)'));
  console.log(line('refresh, every flow queue', a, '   (median)'));
  console.log(line('refresh, 200 flow queues in turn', t, '   (median)'));
  console.log(`\nratio in turn ÷ every queue: wall ${(t.ms / a.ms).toFixed(2)}, broker CPU ${(t.brokerMs / Math.max(1, a.brokerMs)).toFixed(2)}`);
  await consumer.stop({ graceMs: 0 });
} finally {
  await q.deleteTopology().catch((err: unknown) => console.error('cleanup failed: delete the queues of prefix', prefix, err));
  await q.close();
}
