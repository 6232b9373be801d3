import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';

type Address = ipaddr.IPv4 | ipaddr.IPv6;
type Range = [Address, number];

/**
 * Parses an address as found in a socket or an X-Forwarded-For hop: plain IPv4/IPv6, `1.2.3.4:port`,
 * `[v6]` or `[v6]:port`. Strict (no `127.1` or hex forms). IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a
 * dual-stack socket reports) becomes the IPv4 address, so it matches IPv4 CIDRs.
 */
export function parseIp(text: string): Address | undefined {
  let s = text.trim();
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(s);
  if (bracketed) s = bracketed[1] ?? '';
  else if (/^\d{1,3}(?:\.\d{1,3}){3}:\d{1,5}$/.test(s)) s = s.slice(0, s.lastIndexOf(':'));
  let addr: Address;
  if (isIPv4(s)) addr = ipaddr.IPv4.parse(s);
  else if (isIPv6(s)) addr = ipaddr.IPv6.parse(s);
  else return undefined;
  return unmap(addr);
}

function unmap(addr: Address): Address {
  return addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()
    ? (addr as ipaddr.IPv6).toIPv4Address()
    : addr;
}

/** `10.0.0.0/8`, `2001:db8::/32`, a bare address (= /32 or /128), or an IPv4-mapped range `::ffff:10.0.0.0/104`. */
export function parseCidr(text: string): Range | undefined {
  const s = text.trim();
  const slash = s.indexOf('/');
  const addr = parseIp(slash < 0 ? s : s.slice(0, slash));
  if (!addr) return undefined;
  const wasMapped = addr.kind() === 'ipv4' && !isIPv4(slash < 0 ? s : s.slice(0, slash));
  const max = addr.kind() === 'ipv4' ? 32 : 128;
  if (slash < 0) return [addr, max];
  const bitsText = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsText)) return undefined;
  let bits = Number(bitsText);
  if (wasMapped) {
    // An IPv6 prefix over the mapped space; below /96 it would also cover non-mapped IPv6.
    if (bits < 96 || bits > 128) return undefined;
    bits -= 96;
  }
  if (bits > max) return undefined;
  return [addr, bits];
}

/** The entries of a list that are not valid addresses or CIDRs (for config validation). */
export function invalidCidrs(list: readonly string[]): string[] {
  return list.filter((e) => parseCidr(e) === undefined);
}

/** A set of CIDRs. IPv4 ranges match IPv4 clients (including IPv4-mapped IPv6); IPv6 ranges IPv6 ones. */
export class CidrList {
  readonly #v4: Range[] = [];
  readonly #v6: Range[] = [];

  /** Throws on an invalid entry, naming it. */
  constructor(entries: readonly string[]) {
    for (const e of entries) {
      const range = parseCidr(e);
      if (!range) throw new Error(`Invalid IP address or CIDR: ${e}`);
      (range[0].kind() === 'ipv4' ? this.#v4 : this.#v6).push(range);
    }
  }

  get size(): number {
    return this.#v4.length + this.#v6.length;
  }

  /** Accepts a string (parsed as by parseIp) or a parsed address; unparseable input never matches. */
  contains(ip: string | Address): boolean {
    const addr = typeof ip === 'string' ? parseIp(ip) : unmap(ip);
    if (!addr) return false;
    const ranges = addr.kind() === 'ipv4' ? this.#v4 : this.#v6;
    // match() requires both sides of the same kind, which the split above guarantees.
    return ranges.some((r) => (addr as ipaddr.IPv4).match(r as [ipaddr.IPv4, number]));
  }
}

/** Whether a client may call a flow: no list (or an empty one) allows everyone. */
export function isIpAllowed(allowlist: CidrList | undefined, clientIp: string): boolean {
  if (!allowlist || allowlist.size === 0) return true;
  return allowlist.contains(clientIp);
}
