import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  SecretBox,
  generateSecret,
  isSealed,
  loadOrCreateMasterKey,
  maskSecret,
  parseMasterKey,
} from '../../src/auth/secret-box.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'hookd-secret-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const KEY_HEX = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';

describe('master key', () => {
  it('accepts HOOKD_SECRET_KEY as 64 hex chars or base64 of 32 bytes', () => {
    const dir = tempDir();
    const fromHex = loadOrCreateMasterKey(dir, KEY_HEX);
    expect(fromHex.toString('hex')).toBe(KEY_HEX);
    const b64 = Buffer.from(KEY_HEX, 'hex').toString('base64');
    expect(loadOrCreateMasterKey(dir, b64).equals(fromHex)).toBe(true);
    expect(loadOrCreateMasterKey(dir, Buffer.from(KEY_HEX, 'hex').toString('base64url')).equals(fromHex)).toBe(true);
    // The env key wins: no key file is written.
    expect(() => statSync(join(dir, 'secret.key'))).toThrow();
  });

  it('rejects a wrong-sized or garbled env key', () => {
    const dir = tempDir();
    expect(() => loadOrCreateMasterKey(dir, 'abcd')).toThrow(/HOOKD_SECRET_KEY/);
    expect(() => loadOrCreateMasterKey(dir, Buffer.alloc(16).toString('base64'))).toThrow(/HOOKD_SECRET_KEY/);
    expect(() => parseMasterKey('zz'.repeat(32))).toThrow();
  });

  it('creates DATA_DIR/secret.key with mode 0600 and reads the same key back', () => {
    const dir = join(tempDir(), 'nested', 'data');
    const k1 = loadOrCreateMasterKey(dir);
    expect(k1.length).toBe(32);
    const path = join(dir, 'secret.key');
    if (process.platform !== 'win32') expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8').trim()).toBe(k1.toString('hex'));
    const k2 = loadOrCreateMasterKey(dir);
    expect(k2.equals(k1)).toBe(true);
  });

  it('tightens an existing key file readable by others, and reports a corrupt one', () => {
    const dir = tempDir();
    const path = join(dir, 'secret.key');
    writeFileSync(path, KEY_HEX);
    chmodSync(path, 0o644);
    expect(loadOrCreateMasterKey(dir).toString('hex')).toBe(KEY_HEX);
    if (process.platform !== 'win32') expect(statSync(path).mode & 0o777).toBe(0o600);
    writeFileSync(path, 'not a key');
    expect(() => loadOrCreateMasterKey(dir)).toThrow(/secret\.key is invalid/);
  });
});

describe('SecretBox', () => {
  const box = new SecretBox(Buffer.from(KEY_HEX, 'hex'));

  it('round-trips, with a fresh IV each time', () => {
    for (const plain of ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '', 'pässwörd 🚀', 'x'.repeat(5000)]) {
      const a = box.seal(plain);
      const b = box.seal(plain);
      expect(a).not.toBe(b);
      expect(a).toMatch(/^v1:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+:[A-Za-z0-9_-]*$/);
      expect(isSealed(a)).toBe(true);
      expect(box.open(a)).toBe(plain);
      if (plain.length > 4) expect(a).not.toContain(plain);
    }
    expect(isSealed('whsec_abc')).toBe(false);
  });

  it('detects tampering of iv, tag or ciphertext', () => {
    const sealed = box.seal('top secret value');
    const parts = sealed.split(':');
    for (const i of [1, 2, 3]) {
      const bytes = Buffer.from(parts[i] ?? '', 'base64url');
      bytes[0] = (bytes[0] ?? 0) ^ 0x01;
      const tampered = parts.map((p, j) => (j === i ? bytes.toString('base64url') : p)).join(':');
      expect(() => box.open(tampered)).toThrow(/failed authentication|Not a sealed/);
    }
    expect(() => box.open('v2:' + parts.slice(1).join(':'))).toThrow(/Not a sealed/);
    expect(() => box.open('garbage')).toThrow(/Not a sealed/);
  });

  it('does not open under another key or another context', () => {
    const other = new SecretBox(Buffer.alloc(32, 7));
    const sealed = box.seal('s', 'flow-a');
    expect(box.open(sealed, 'flow-a')).toBe('s');
    expect(() => other.open(sealed, 'flow-a')).toThrow();
    expect(() => box.open(sealed, 'flow-b')).toThrow();
    expect(() => box.open(sealed)).toThrow();
  });

  it('refuses a key that is not 32 bytes', () => {
    expect(() => new SecretBox(Buffer.alloc(16))).toThrow();
  });
});

describe('maskSecret / generateSecret', () => {
  it('shows a known prefix and the last 4 characters only', () => {
    expect(maskSecret('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')).toBe('whsec_…LaSw');
    const hex = 'a'.repeat(60) + 'b1c2';
    expect(maskSecret(hex)).toBe('…b1c2');
    // Short secrets show no tail; unknown prefixes are not shown.
    expect(maskSecret('hunter2')).toBe('…');
    expect(maskSecret('my_password_is_long_enough')).toBe('…ough');
  });

  it('generates whsec_ base64 keys for standard-webhooks and 32-byte hex otherwise', () => {
    const sw = generateSecret('standard-webhooks');
    expect(sw).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(Buffer.from(sw.slice(6), 'base64').length).toBe(24);
    const hex = generateSecret('github');
    expect(hex).toMatch(/^[0-9a-f]{64}$/);
    expect(generateSecret('github')).not.toBe(hex);
  });
});

describe('SecretBox.fingerprint', () => {
  it('is the same for the same key, differs for another, and does not contain the key', () => {
    const key = Buffer.alloc(32, 7);
    const a = new SecretBox(key).fingerprint();
    expect(new SecretBox(Buffer.from(key)).fingerprint()).toBe(a);
    expect(new SecretBox(Buffer.alloc(32, 8)).fingerprint()).not.toBe(a);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(a).not.toContain(key.toString('hex'));
  });
});
