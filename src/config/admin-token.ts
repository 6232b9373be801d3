import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface AdminToken {
  token: string;
  /** True when this start created it (the caller prints it once). */
  generated: boolean;
  file?: string;
}

/** HOOKD_ADMIN_TOKEN wins; else DATA_DIR/admin-token, created with mode 0600 at first start. */
export function loadOrCreateAdminToken(dataDir: string, configured: string | undefined): AdminToken {
  if (configured) return { token: configured, generated: false };
  const file = path.join(dataDir, 'admin-token');
  if (existsSync(file)) return { token: readFileSync(file, 'utf8').trim(), generated: false, file };
  mkdirSync(dataDir, { recursive: true });
  const token = `hkd_${randomBytes(24).toString('base64url')}`;
  writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return { token, generated: true, file };
}
