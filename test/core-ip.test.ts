// The IP literal parser in core/: it must accept exactly what node:net accepts (host validation used node:net
// before), and name the same 16 bytes as the WHATWG URL parser (an independent implementation) does.
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { test } from 'node:test';
import { canonicalAddress, formatIPv6, ipFamily, writeIPv4, writeIPv6 } from '../src/core/ip.js';
import { isValidTargetHost } from '../src/core/target.js';
import { int, pick, randomIPv4, randomIPv6, rng } from './helpers/random.js';

function ipv6Bytes(text: string): Buffer {
  const b = Buffer.alloc(16);
  assert.ok(writeIPv6(text, b, 0), `${text} is an IPv6 literal`);
  return b;
}

/** The URL standard's serialization of an IPv6 host: lower-case, no leading zeros, first longest zero run as ::. */
function urlCanonical(text: string): string {
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}

test('IPv4-mapped and IPv4-compatible addresses: the dotted quad is the last 32 bits (RFC 4291 section 2.5.5)', () => {
  assert.deepEqual(ipv6Bytes('::ffff:1.2.3.4'), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]));
  assert.deepEqual(ipv6Bytes('::FFFF:102:304'), ipv6Bytes('::ffff:1.2.3.4'));
  assert.deepEqual(ipv6Bytes('0:0:0:0:0:ffff:1.2.3.4'), ipv6Bytes('::ffff:1.2.3.4'));
  assert.deepEqual(ipv6Bytes('::1.2.3.4'), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]));
  assert.deepEqual(ipv6Bytes('64:ff9b::192.0.2.33'), Buffer.from([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 192, 0, 2, 33]));
  assert.deepEqual(ipv6Bytes('fd7a:115c:a1e0::1'), Buffer.from([0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
  assert.deepEqual(ipv6Bytes('fe80::1%eth0'), ipv6Bytes('fe80::1'), 'a zone is not part of the address');
  const v4 = Buffer.alloc(4);
  assert.ok(writeIPv4('10.200.0.255', v4, 0));
  assert.deepEqual(v4, Buffer.from([10, 200, 0, 255]));
});

test('RFC 5952 formatting of IPv6 addresses round-trips', () => {
  for (const a of ['::1', '::', '1::', 'fe80::1:2', '2001:db8::8:800:200c:417a', '1:2:3:4:5:6:7:8', '2001:db8:0:1:1:1:1:1']) {
    assert.equal(formatIPv6(ipv6Bytes(a), 0), a);
  }
  assert.equal(formatIPv6(ipv6Bytes('::ffff:1.2.3.4'), 0), '::ffff:102:304');
});

test('edge cases are classified as node:net classifies them', () => {
  const cases = [
    '', '1.2.3.4', '0.0.0.0', '255.255.255.255', '256.1.1.1', '01.2.3.4', '1.2.3.04', '1.2.3', '1.2.3.4.5', '1..2.3', '1.2.3.4 ',
    '::', '::1', '1::', ':::', ':1::2', '1::2:', '1:::2', '1::2::3', '::1:2:3:4:5:6:7', '1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:8::',
    '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '00000::1', '0000:0:0:0:0:0:0:1', 'g::1', '::ffff:1.2.3.4',
    '::ffff:256.1.1.1', '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', '::1.2.3.4', '::1.2.3.4:5', '1.2.3.4::', '::1.2.3',
    'fe80::1%eth0', 'fe80::1%', '::%a', 'fe80::1%e_th0', 'fe80::1%e.t:h-0', 'fe80::1%eth0%1', '1.2.3.4%eth0', '%eth0', '[::1]',
  ];
  for (const c of cases) assert.equal(ipFamily(c), isIP(c), JSON.stringify(c));
});

test('property: on random and mutated text ipFamily answers as node:net, and every IPv6 literal names the bytes URL parsing names', () => {
  const r = rng(0x1b_2c_3d);
  const alphabet = '0123456789abcdefABCDEF::::....%%gz- ';
  const kinds = new Map<number, number>([[0, 0], [4, 0], [6, 0]]);
  for (let i = 0; i < 30_000; i++) {
    let text: string;
    const p = r();
    if (p < 0.3) {
      text = '';
      for (let n = int(r, 24); n > 0; n--) text += pick(r, alphabet.split(''));
    } else {
      text = p < 0.45 ? randomIPv4(r) : randomIPv6(r);
      if (r() < 0.5) {
        // One edit: replace, delete or insert a character.
        const at = int(r, text.length + 1);
        const op = r();
        const c = pick(r, alphabet.split(''));
        text = op < 0.4 ? text.slice(0, at) + c + text.slice(at + 1) : op < 0.7 ? text.slice(0, at) + text.slice(at + 1) : text.slice(0, at) + c + text.slice(at);
      }
    }
    const family = ipFamily(text);
    assert.equal(family, isIP(text), JSON.stringify(text));
    kinds.set(family, kinds.get(family)! + 1);
    if (family === 6 && !text.includes('%')) assert.equal(formatIPv6(ipv6Bytes(text), 0), urlCanonical(text), JSON.stringify(text));
  }
  // The corpus must reach each answer often, or it is not testing much.
  for (const [family, n] of kinds) assert.ok(n > 2_000, `family ${family} seen only ${n} times`);
});

test('target hosts: names and IP literals, nothing that could break a request line', () => {
  for (const ok of ['example.com', 'a', 'x.y.z.', 'under_score.example', '10.1.2.3', '::1', 'fe80::1%eth0', '::ffff:1.2.3.4']) assert.ok(isValidTargetHost(ok), ok);
  for (const bad of ['', 'a b', 'x\r\nInjected: 1', '-leading', 'trailing-', '[::1]', 'host:80', 'a'.repeat(255)]) assert.ok(!isValidTargetHost(bad), bad);
});

test('canonicalAddress: one spelling per address, as the URL parser writes IPv6; IPv4-mapped as IPv4; no zone, no legacy IPv4 forms', () => {
  for (const [text, canonical] of [
    ['100.64.0.7', '100.64.0.7'],
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::FFFF:7F00:1', '127.0.0.1'],
    ['0:0:0:0:0:ffff:6440:7', '100.64.0.7'],
    ['FD7A:115C:A1E0:0000::0001', 'fd7a:115c:a1e0::1'],
    ['::127.0.0.1', '::7f00:1'],
    ['::ffff:0:6440:7', '::ffff:0:6440:7'],
  ] as const) assert.equal(canonicalAddress(text), canonical, text);
  for (const text of ['fe80::1%eth0', '2130706433', '0177.0.0.1', '0x7f.0.0.1', '127.1', '100.064.0.7', ' 1.2.3.4', '1.2.3.4.', '[::1]', '']) assert.equal(canonicalAddress(text), null, text);
  const r = rng(1313);
  for (let i = 0; i < 20_000; i++) {
    const text = randomIPv6(r);
    const c = canonicalAddress(text)!;
    const url = new URL(`http://[${text}]/`).hostname.slice(1, -1);
    if (ipFamily(c) === 4) {
      const b = ipv6Bytes(text);
      assert.ok(url.startsWith('::ffff:'), `${text} is IPv4-mapped`);
      assert.equal(c, `${b[12]}.${b[13]}.${b[14]}.${b[15]}`, text);
    } else {
      assert.equal(c, url, text);
    }
    assert.equal(canonicalAddress(c), c, `${text}: canonical form is stable`);
  }
});
