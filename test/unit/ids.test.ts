import { describe, expect, it } from 'vitest';
import { uuidv7 } from '../../src/core/ids.js';

describe('uuidv7', () => {
  it('has the v7 layout, variant bits and the timestamp in front', () => {
    const t = Date.UTC(2030, 10, 24, 12, 0, 0, 123);
    const id = uuidv7(t);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parseInt(id.slice(0, 8) + id.slice(9, 13), 16)).toBe(t);
  });

  it('is strictly increasing, within a millisecond too, and never repeats', () => {
    const base = Date.UTC(2031, 0, 1);
    const ids = Array.from({ length: 20_000 }, (_, i) => uuidv7(base + Math.floor(i / 1000)));
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) expect(ids[i - 1]! < ids[i]!).toBe(true);
  });
});
