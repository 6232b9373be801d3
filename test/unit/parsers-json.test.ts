import { expect, it } from 'vitest';
import { parseJsonText } from '../../src/ingress/parsers/buffered.js';

it('the range check is linear in long digit runs (9 MB of 299-digit numbers: it once took 4.5 s)', () => {
  const text = `[${Array<string>(30_000).fill('9'.repeat(299)).join(',')}]`;
  const started = performance.now();
  expect((parseJsonText(text, 'JSON') as number[]).length).toBe(30_000);
  expect(performance.now() - started).toBeLessThan(1_000);
  expect(() => parseJsonText(`[${'9'.repeat(400)}]`, 'JSON')).toThrow(/out of range/);
  expect(() => parseJsonText(`{"n":1${'0'.repeat(250)}e99}`, 'JSON')).toThrow(/out of range/);
  expect(parseJsonText('{"id":"3e5f","n":1e308,"m":-1e-400}', 'JSON')).toEqual({ id: '3e5f', n: 1e308, m: -0 });
});
