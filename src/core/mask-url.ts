/**
 * Query parameter names whose values are credentials: `?api_key=`, `?token=`, `?sig=`, a
 * connection string's `password=` or `sslkey=`… (`key` alone, not inside `keyword`).
 */
const CREDENTIAL_PARAM = /^(key|auth|code|sig)$|api[-_]?key|ssl-?key|token|secret|pass|signature|credential|cert/i;

/**
 * A URL fit for a log or a listing: its password and the values of credential-named query
 * parameters replaced by `mask`. The text as given when nothing was replaced; undefined when it
 * does not parse as a URL (the caller decides what to show then).
 */
export function maskUrlCredentials(url: string, mask: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  let changed = false;
  if (u.password !== '') {
    u.password = 'MASKED-PASSWORD';
    changed = true;
  }
  for (const name of new Set(u.searchParams.keys())) {
    if (!CREDENTIAL_PARAM.test(name)) continue;
    u.searchParams.set(name, 'MASKED-VALUE');
    changed = true;
  }
  // Placeholders, then the mask as written: URL would percent-encode `*` or `[`.
  return changed ? u.toString().replace(/MASKED-PASSWORD|MASKED-VALUE/g, mask) : url;
}
