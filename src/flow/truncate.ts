/**
 * JSON for execution records (step input/output), at most `limit` UTF-8 bytes. A value that does not
 * fit is replaced by a marker that is still valid JSON:
 *
 *   {"$truncated":true,"bytes":<full JSON size>,"preview":"<start of the JSON text>"}
 *
 * The runner keeps full values in the execution cursor; only the records are cut.
 */
export function recordJson(value: unknown, limit: number): string | undefined {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    json = JSON.stringify({ $unserializable: err instanceof Error ? err.message : String(err) });
  }
  if (json === undefined) return undefined;
  // A UTF-16 code unit is at most 3 UTF-8 bytes: skip the byte count for small values.
  if (json.length * 3 <= limit) return json;
  const bytes = Buffer.byteLength(json);
  if (bytes <= limit) return json;
  return truncatedMarker(json, bytes, limit);
}

export function isTruncated(recorded: string | undefined): boolean {
  return recorded !== undefined && recorded.startsWith('{"$truncated":true');
}

function truncatedMarker(json: string, bytes: number, limit: number): string {
  const wrap = (n: number) => JSON.stringify({ $truncated: true, bytes, preview: json.slice(0, n) });
  // Longest preview whose marker fits (escaping makes the size non-linear: binary search).
  let lo = 0;
  let hi = Math.min(json.length, limit);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (Buffer.byteLength(wrap(mid)) <= limit) lo = mid;
    else hi = mid - 1;
  }
  // Never end on half a surrogate pair.
  const last = json.charCodeAt(lo - 1);
  if (lo > 0 && last >= 0xd800 && last <= 0xdbff) lo -= 1;
  return wrap(lo);
}
