/** "Application/JSON; charset=UTF-8" → { type: "application/json", params: { charset: "UTF-8" } }. */
export interface MediaType {
  type: string;
  params: Record<string, string>;
}

export function parseMediaType(header: string): MediaType {
  const [type = '', ...rest] = header.split(';');
  const params: Record<string, string> = {};
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq < 0) continue;
    const key = p.slice(0, eq).trim().toLowerCase();
    let value = p.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (key) params[key] = value;
  }
  return { type: type.trim().toLowerCase(), params };
}
