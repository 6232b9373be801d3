import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';

describe('HOOKD_READ_TOKENS', () => {
  it('is a comma-separated list, spaces around commas ignored; none by default', () => {
    expect(loadConfig({}).readTokens).toEqual([]);
    expect(loadConfig({ HOOKD_READ_TOKENS: '' }).readTokens).toEqual([]);
    expect(loadConfig({ HOOKD_READ_TOKENS: ' aaaaaaaaaaaaaaaa , bbbbbbbbbbbbbbbb,' }).readTokens).toEqual(['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb']);
  });

  it('refuses short, spaced or repeated tokens with the variable named', () => {
    expect(() => loadConfig({ HOOKD_READ_TOKENS: 'short' })).toThrow(/HOOKD_READ_TOKENS: each token must be 16 to 512/);
    expect(() => loadConfig({ HOOKD_READ_TOKENS: 'has a space in the middle' })).toThrow(/HOOKD_READ_TOKENS/);
    expect(() => loadConfig({ HOOKD_READ_TOKENS: 'é'.repeat(20) })).toThrow(/HOOKD_READ_TOKENS/);
    expect(() => loadConfig({ HOOKD_READ_TOKENS: `${'a'.repeat(16)},${'a'.repeat(16)}` })).toThrow(/listed twice/);
    expect(loadConfig({ HOOKD_READ_TOKENS: 'x'.repeat(512) }).readTokens).toHaveLength(1);
    expect(() => loadConfig({ HOOKD_READ_TOKENS: 'x'.repeat(513) })).toThrow(/HOOKD_READ_TOKENS/);
  });
});

describe('EXECUTION_DATA_LIMIT', () => {
  it('is at least 256 bytes, so that a truncation marker fits', () => {
    expect(loadConfig({ EXECUTION_DATA_LIMIT: '256' }).executionDataLimit).toBe(256);
    expect(() => loadConfig({ EXECUTION_DATA_LIMIT: '0' })).toThrow(/EXECUTION_DATA_LIMIT: at least 256 bytes/);
  });
});
