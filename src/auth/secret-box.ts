import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

/**
 * Secrets at rest: AES-256-GCM under a master key. Sealed form `v1:<iv>:<tag>:<ciphertext>`, each part
 * base64url; the version lets a later format or key scheme coexist with stored v1 values.
 */

export const MASTER_KEY_FILE = 'secret.key';
export const MASTER_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const VERSION = 'v1';

/** Parses a master key: 64 hex characters, or base64/base64url of exactly 32 bytes. */
export function parseMasterKey(text: string): Buffer {
  const s = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(s)) return Buffer.from(s, 'hex');
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) {
    const key = Buffer.from(s.replace(/=+$/, ''), 'base64');
    if (key.length === MASTER_KEY_BYTES) return key;
  }
  throw new Error('A master key must be 64 hex characters or the base64 of 32 bytes');
}

/**
 * The master key: from `envKey` (HOOKD_SECRET_KEY) when given, else from `DATA_DIR/secret.key`,
 * created with 32 random bytes (mode 0600, never overwritten) on first start. An existing key file
 * readable by group or others is tightened to 0600.
 */
export function loadOrCreateMasterKey(dataDir: string, envKey?: string): Buffer {
  if (envKey !== undefined && envKey.trim() !== '') {
    try {
      return parseMasterKey(envKey);
    } catch (err) {
      throw new Error(`HOOKD_SECRET_KEY is invalid: ${(err as Error).message}`);
    }
  }
  const path = join(dataDir, MASTER_KEY_FILE);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  try {
    // 'wx': fail if it exists, so two processes starting together never replace each other's key.
    writeFileSync(path, `${randomBytes(MASTER_KEY_BYTES).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  if (process.platform !== 'win32' && (statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  try {
    return parseMasterKey(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path} is invalid: ${(err as Error).message}`);
  }
}

export class SecretBox {
  readonly #key: Buffer;

  constructor(masterKey: Buffer) {
    if (masterKey.length !== MASTER_KEY_BYTES) throw new Error('The master key must be 32 bytes');
    this.#key = Buffer.from(masterKey);
  }

  /**
   * Encrypts a secret. `context` (e.g. the flow id) is authenticated but not stored: a sealed value
   * copied to another context does not open.
   */
  seal(plain: string, context = ''): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(context));
    const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    const parts = [iv, cipher.getAuthTag(), ct].map((b) => b.toString('base64url'));
    return [VERSION, ...parts].join(':');
  }

  /**
   * Identifies the key without revealing it (HMAC of a fixed label): instances sharing a database
   * compare fingerprints to find out they were given different keys before any secret fails to open.
   */
  fingerprint(): string {
    return createHmac('sha256', this.#key).update('hookd:master-key-fingerprint:v1').digest('hex');
  }

  /**
   * A key for another purpose, derived from the master key (HMAC of a label): the same on every
   * instance sharing the master key, useless for opening secrets.
   */
  deriveKey(label: string): Buffer {
    return createHmac('sha256', this.#key).update(`hookd:derived-key:${label}`).digest();
  }

  /** Decrypts a sealed secret; throws when it was tampered with, or sealed under another key or context. */
  open(sealed: string, context = ''): string {
    const parts = sealed.split(':');
    if (parts.length !== 4 || parts[0] !== VERSION) throw new Error('Not a sealed secret');
    const [iv, tag, ct] = parts.slice(1).map((p) => Buffer.from(p, 'base64url'));
    if (iv?.length !== IV_BYTES || tag?.length !== TAG_BYTES || !ct) throw new Error('Not a sealed secret');
    const decipher = createDecipheriv('aes-256-gcm', this.#key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad(context));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(ct), decipher.final()]).toString('utf8');
    } catch {
      throw new Error('Sealed secret failed authentication (tampered, or another key)');
    }
  }
}

function aad(context: string): Buffer {
  return Buffer.from(`hookd-secret:${VERSION}:${context}`, 'utf8');
}

export function isSealed(value: string): boolean {
  return /^v1:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+:[A-Za-z0-9_-]*$/.test(value);
}

/** Public prefixes of provider secrets; any other leading text could be part of a user's secret. */
const KNOWN_PREFIXES = ['whsec_', 'sk_live_', 'sk_test_', 'rk_live_', 'rk_test_', 'shpss_'];

/**
 * A hint safe to show: a known prefix (`whsec_`, `sk_live_`…) and the last 4 characters, e.g.
 * `whsec_…a1b2`. Secrets too short for 4 characters to be a small part of them show no tail.
 */
export function maskSecret(plain: string): string {
  const prefix = KNOWN_PREFIXES.find((p) => plain.startsWith(p)) ?? '';
  const rest = plain.slice(prefix.length);
  return rest.length >= 16 ? `${prefix}${MASK_MARK}${rest.slice(-4)}` : `${prefix}${MASK_MARK}`;
}

/** What every masked secret holds (U+2026), and no secret hookd takes. */
export const MASK_MARK = '…';

/**
 * A new random secret for an auth type: `whsec_` + base64 of 24 bytes for Standard Webhooks (its
 * key format), 32 random bytes as hex otherwise.
 */
export function generateSecret(kind: string): string {
  if (kind === 'standard-webhooks') return `whsec_${randomBytes(24).toString('base64')}`;
  return randomBytes(32).toString('hex');
}
