import { describe, expect, it } from 'vitest';
import { CidrList, invalidCidrs, isIpAllowed, parseIp } from '../../src/auth/ip-allowlist.js';

describe('CidrList', () => {
  const list = new CidrList(['10.0.0.0/8', '192.168.1.7', '2001:db8::/32', '::1', '::ffff:172.16.0.0/108']);

  it('matches IPv4 CIDRs and single addresses', () => {
    expect(list.contains('10.1.2.3')).toBe(true);
    expect(list.contains('11.0.0.1')).toBe(false);
    expect(list.contains('192.168.1.7')).toBe(true);
    expect(list.contains('192.168.1.8')).toBe(false);
  });

  it('matches IPv6, in any spelling', () => {
    expect(list.contains('2001:db8::1')).toBe(true);
    expect(list.contains('2001:0db8:0000:0000:0000:0000:0000:0001')).toBe(true);
    expect(list.contains('2001:db9::1')).toBe(false);
    expect(list.contains('::1')).toBe(true);
    expect(list.contains('::2')).toBe(false);
  });

  it('treats IPv4-mapped IPv6 clients and ranges as IPv4', () => {
    expect(list.contains('::ffff:10.9.8.7')).toBe(true);
    expect(list.contains('::ffff:11.9.8.7')).toBe(false);
    // ::ffff:172.16.0.0/108 is 172.16.0.0/12
    expect(list.contains('172.31.255.255')).toBe(true);
    expect(list.contains('172.32.0.0')).toBe(false);
    expect(list.contains('::ffff:172.20.1.1')).toBe(true);
  });

  it('never matches garbage, and rejects invalid entries', () => {
    expect(list.contains('not-an-ip')).toBe(false);
    expect(list.contains('127.1')).toBe(false);
    expect(invalidCidrs(['10.0.0.0/8', '10.0.0.0/33', '::/129', 'abc', '1.2.3.4/x', '::ffff:1.2.3.4/64', '0.0.0.0/0', '::/0'])).toEqual([
      '10.0.0.0/33',
      '::/129',
      'abc',
      '1.2.3.4/x',
      '::ffff:1.2.3.4/64',
    ]);
    expect(() => new CidrList(['10.0.0.0/40'])).toThrow(/10\.0\.0\.0\/40/);
  });

  it('isIpAllowed: no list or an empty list allows everyone', () => {
    expect(isIpAllowed(undefined, '1.2.3.4')).toBe(true);
    expect(isIpAllowed(new CidrList([]), '1.2.3.4')).toBe(true);
    expect(isIpAllowed(list, '1.2.3.4')).toBe(false);
    expect(isIpAllowed(list, '10.0.0.1')).toBe(true);
  });
});

describe('parseIp', () => {
  it('strips ports and brackets and unmaps IPv4-mapped addresses', () => {
    expect(parseIp('1.2.3.4:8080')?.toString()).toBe('1.2.3.4');
    expect(parseIp('[2001:db8::1]:443')?.toString()).toBe('2001:db8::1');
    expect(parseIp('[2001:db8::1]')?.toString()).toBe('2001:db8::1');
    expect(parseIp(' ::ffff:127.0.0.1 ')?.toString()).toBe('127.0.0.1');
    expect(parseIp('unknown')).toBeUndefined();
    expect(parseIp('')).toBeUndefined();
  });
});

