import { expect, it } from 'vitest';
import { GroupCommit, type Outcome } from '../../src/store/postgres/group-commit.js';

const tick = () => new Promise((r) => setImmediate(r));

it('with two batches in flight, an item whose key is in one waits for it; other keys go on', async () => {
  const releases: Array<() => void> = [];
  const ran: string[][] = [];
  const gc = new GroupCommit<string, string>(
    async (items) => {
      ran.push([...items]);
      await new Promise<void>((r) => releases.push(r));
      return items.map((i): Outcome<string> => ({ ok: true, value: i }));
    },
    { maxItems: 10, maxBytes: 1_000, maxInflight: 2 },
  );
  const done: string[] = [];
  const submit = (item: string, key: string) => gc.submit(item, key, 1).then((v) => void done.push(v));

  const a1 = submit('a1', 'a');
  await tick();
  expect(ran).toEqual([['a1']]);
  // a2 shares a1's key: it may not commit beside a1 (it could commit first); b1 may.
  const a2 = submit('a2', 'a');
  const b1 = submit('b1', 'b');
  await tick();
  expect(ran).toEqual([['a1'], ['b1']]);
  releases[1]!(); // b1's batch commits; a2 still waits for a1's
  await b1;
  await tick();
  expect(ran).toEqual([['a1'], ['b1']]);
  releases[0]!();
  await a1;
  await tick();
  expect(ran).toEqual([['a1'], ['b1'], ['a2']]);
  releases[2]!();
  await a2;
  expect(done).toEqual(['b1', 'a1', 'a2']);
  await gc.drain();
});
