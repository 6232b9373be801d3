import { expect, it } from 'vitest';
import { clientNetwork } from '../../src/ingress/sender-guard.js';

it('a client for the failure limit: IPv4 as is, IPv6 by /64, IPv4-mapped as IPv4, odd forms never throw', () => {
  expect(clientNetwork('10.0.0.7')).toBe('10.0.0.7');
  expect(clientNetwork('2001:db8:1:2::66')).toBe('2001:db8:1:2::/64');
  expect(clientNetwork('2001:0db8:0001:0002:ffff::9')).toBe('2001:db8:1:2::/64');
  expect(clientNetwork('::ffff:1.2.3.4')).toBe('1.2.3.4');
  expect(clientNetwork('::ffff:7f00:1')).toBe('127.0.0.1');
  expect(clientNetwork('0:0:0:0:0:ffff:1.2.3.4')).toBe('1.2.3.4');
  expect(clientNetwork('::1')).toBe('0:0:0:0::/64');
  expect(clientNetwork('::')).toBe('0:0:0:0::/64');
  expect(clientNetwork('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  expect(() => clientNetwork('fe80::1%1:2:3:4:5:6:7:8')).not.toThrow();
  expect(clientNetwork('not an address')).toBe('not an address');
});
