import { Writable } from 'node:stream';
import { pino } from 'pino';

/** A pino logger whose lines are kept, parsed, in `lines` (what a test reads of the log). */
export function capturingLogger(level = 'info') {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level }, stream), lines };
}
