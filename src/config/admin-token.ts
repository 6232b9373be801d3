import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface AdminToken {
  /** The token itself, when this process knows it (configured, read from DATA_DIR, or made here). */
  token?: string;
  /** SHA-256 of the token: what requests are checked against. */
  digest: Buffer;
  /** True when this start created it (the caller prints it once). */
  generated: boolean;
  /** DATA_DIR/admin-token, when the token is kept there. */
  file?: string;
  /** Set when this instance's own DATA_DIR/admin-token is not the cluster's token (the caller warns). */
  ignoredFile?: string;
  /** HOOKD_ADMIN_TOKEN is not the token the cluster's settings hold (the caller warns). */
  differsFromCluster?: boolean;
}

/** Values every instance of a cluster shares (Backend.settings), when there are several. */
export interface SharedTokenStore {
  getOrSet(key: string, value: string): Promise<string>;
  get(key: string): Promise<string | undefined>;
}

/** Key of the admin token's SHA-256 (hex) in the shared settings. */
export const ADMIN_TOKEN_SETTING = 'admin_token_sha256';

/** What tokens are checked against: their SHA-256 (the admin token's, the read tokens'). */
export const tokenDigest = (s: string): Buffer => createHash('sha256').update(s).digest();
const newToken = (): string => `hkd_${randomBytes(24).toString('base64url')}`;

/**
 * HOOKD_ADMIN_TOKEN wins (not shared; `differsFromCluster` when the cluster's settings hold another
 * token's hash). Else, one process alone: DATA_DIR/admin-token, created with mode 0600 at
 * first start. Several instances sharing a backend (`shared`): the first one to start stores the
 * SHA-256 of its token (the one in its DATA_DIR, or a new one it prints once) and every instance
 * checks requests against that hash, so one token works on all of them behind a load balancer. The
 * token itself is never stored in the database.
 */
export async function resolveAdminToken(dataDir: string, configured: string | undefined, shared?: SharedTokenStore): Promise<AdminToken> {
  if (configured) {
    const digest = tokenDigest(configured);
    // Not shared; but another token stored for the cluster means instances accept different
    // tokens (random 401s behind a load balancer): said at start.
    const stored = shared === undefined ? undefined : await shared.get(ADMIN_TOKEN_SETTING);
    return { token: configured, digest, generated: false, ...(stored !== undefined && stored !== digest.toString('hex') ? { differsFromCluster: true } : {}) };
  }
  const file = path.join(dataDir, 'admin-token');
  const local = existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
  const candidate = local ?? newToken();
  if (shared !== undefined) {
    const candidateHex = tokenDigest(candidate).toString('hex');
    const storedHex = await shared.getOrSet(ADMIN_TOKEN_SETTING, candidateHex);
    if (storedHex !== candidateHex) {
      // Another instance set the cluster's token first: this one only knows its hash.
      return { digest: Buffer.from(storedHex, 'hex'), generated: false, ...(local !== undefined ? { ignoredFile: file } : {}) };
    }
  }
  if (local !== undefined) return { token: local, digest: tokenDigest(local), generated: false, file };
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, `${candidate}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return { token: candidate, digest: tokenDigest(candidate), generated: true, file };
}
