import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN_SETTING, resolveAdminToken, type SharedTokenStore } from '../../src/config/admin-token.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest();
const dirs: string[] = [];
const dataDir = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'hookd-admin-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The backend's shared settings, in memory: the first value stored for a key wins. */
function sharedSettings(): SharedTokenStore & { values: Map<string, string> } {
  const values = new Map<string, string>();
  return {
    values,
    async getOrSet(key, value) {
      if (!values.has(key)) values.set(key, value);
      return values.get(key)!;
    },
    async get(key) {
      return values.get(key);
    },
  };
}

describe('admin token of a cluster (instances sharing a backend)', () => {
  it('the first instance makes it (printed once, kept 0600 in its DATA_DIR); the others check its hash', async () => {
    const shared = sharedSettings();
    const first = await resolveAdminToken(dataDir(), undefined, shared);
    expect(first.generated).toBe(true);
    expect(first.token).toMatch(/^hkd_/);
    expect(readFileSync(first.file!, 'utf8').trim()).toBe(first.token);
    expect(statSync(first.file!).mode & 0o777).toBe(0o600);
    // Only the hash is shared, never the token.
    expect(shared.values.get(ADMIN_TOKEN_SETTING)).toBe(sha256(first.token!).toString('hex'));

    const second = await resolveAdminToken(dataDir(), undefined, shared);
    expect(second).toEqual({ digest: sha256(first.token!), generated: false });

    // Restarted, the first instance finds its token in DATA_DIR again.
    const again = await resolveAdminToken(path.dirname(first.file!), undefined, shared);
    expect(again).toMatchObject({ token: first.token, generated: false });
    expect(again.digest.equals(sha256(first.token!))).toBe(true);
  });

  it('an instance with an older token of its own: the cluster token wins, and it says which file is ignored', async () => {
    const shared = sharedSettings();
    const first = await resolveAdminToken(dataDir(), undefined, shared);
    const dir = dataDir();
    writeFileSync(path.join(dir, 'admin-token'), 'hkd_mine\n', { mode: 0o600 });
    const other = await resolveAdminToken(dir, undefined, shared);
    expect(other.token).toBeUndefined();
    expect(other.ignoredFile).toBe(path.join(dir, 'admin-token'));
    expect(other.digest.equals(sha256(first.token!))).toBe(true);
  });

  it('an existing DATA_DIR token becomes the cluster token when its instance is first (an upgrade keeps it)', async () => {
    const shared = sharedSettings();
    const dir = dataDir();
    writeFileSync(path.join(dir, 'admin-token'), 'hkd_existing\n', { mode: 0o600 });
    const t = await resolveAdminToken(dir, undefined, shared);
    expect(t).toMatchObject({ token: 'hkd_existing', generated: false });
    expect(shared.values.get(ADMIN_TOKEN_SETTING)).toBe(sha256('hkd_existing').toString('hex'));
  });

  it('HOOKD_ADMIN_TOKEN wins and is not shared', async () => {
    const shared = sharedSettings();
    const t = await resolveAdminToken(dataDir(), 'configured', shared);
    expect(t).toEqual({ token: 'configured', digest: sha256('configured'), generated: false });
    expect(shared.values.size).toBe(0);
  });

  it('HOOKD_ADMIN_TOKEN other than the token the cluster holds is said (instances would accept different tokens)', async () => {
    const shared = sharedSettings();
    const first = await resolveAdminToken(dataDir(), undefined, shared);
    expect(await resolveAdminToken(dataDir(), 'configured', shared)).toMatchObject({ token: 'configured', differsFromCluster: true });
    expect((await resolveAdminToken(dataDir(), first.token, shared)).differsFromCluster).toBeUndefined();
  });
});
