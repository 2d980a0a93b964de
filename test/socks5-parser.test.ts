import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AUTH_FAILED, METHOD_NONE_ACCEPTABLE, METHOD_USERPASS, Socks5Parser, SocksReply, formatIPv6, socksReply, type Socks5Step } from '../src/proxy/socks5-parser.js';
import { encodeSocksConnect, ipv6Bytes, parseSocksReply } from '../src/routing/upstream-socks5.js';
import { parseConnectReply } from '../src/routing/upstream-http.js';

const greeting = (...methods: number[]) => Buffer.from([5, methods.length, ...methods]);
const userpass = (u: string, p: string) => Buffer.concat([Buffer.from([1, Buffer.byteLength(u)]), Buffer.from(u), Buffer.from([Buffer.byteLength(p)]), Buffer.from(p)]);
const connectDomain = (host: string, port: number) => Buffer.concat([Buffer.from([5, 1, 0, 3, host.length]), Buffer.from(host, 'latin1'), Buffer.from([port >> 8, port & 0xff])]);

/** Feeds chunks the way the listener does and records every decision (plus the bytes left after CONNECT). */
function drive(chunks: Buffer[]): string[] {
  const p = new Socks5Parser();
  const out: string[] = [];
  for (const c of chunks) {
    p.push(c);
    for (;;) {
      const s = p.next();
      if (s.kind === 'need-more') break;
      out.push(describe(s));
      if (s.kind === 'connect') {
        out.push(`rest ${Buffer.concat([p.rest(), ...chunks.slice(chunks.indexOf(c) + 1)]).toString('hex')}`);
        return out;
      }
      if (s.kind === 'reject') return out;
    }
  }
  out.push('need-more');
  return out;
}

function describe(s: Socks5Step): string {
  switch (s.kind) {
    case 'method':
      return `method ${s.reply.toString('hex')}`;
    case 'credentials':
      return `credentials ${s.username.toString('hex')} ${s.password.toString('hex')}`;
    case 'connect':
      return `connect ${s.addressType} ${s.target.host} ${s.target.port}`;
    case 'reject':
      return `reject ${s.reply?.toString('hex') ?? 'none'}`;
    default:
      return s.kind;
  }
}

function first(bytes: Buffer): Socks5Step[] {
  const p = new Socks5Parser();
  p.push(bytes);
  const out: Socks5Step[] = [];
  for (;;) {
    const s = p.next();
    out.push(s);
    if (s.kind === 'need-more' || s.kind === 'reject' || s.kind === 'connect') return out;
  }
}

test('full handshake: greeting, RFC 1929 credentials, CONNECT to a domain, pipelined data kept', () => {
  const all = Buffer.concat([greeting(0, 2), userpass('k3y', 'k3y'), connectDomain('example.com', 443), Buffer.from('early')]);
  const steps = first(all);
  assert.deepEqual(steps.map((s) => s.kind), ['method', 'credentials', 'connect']);
  assert.deepEqual((steps[0] as { reply: Buffer }).reply, METHOD_USERPASS);
  const cred = steps[1] as { username: Buffer; password: Buffer };
  assert.equal(cred.username.toString(), 'k3y');
  assert.equal(cred.password.toString(), 'k3y');
  assert.deepEqual((steps[2] as { target: unknown }).target, { host: 'example.com', port: 443 });
  assert.deepEqual(drive([all]).at(-1), `rest ${Buffer.from('early').toString('hex')}`);
});

test('IPv4 and IPv6 requests decode to plain literals', () => {
  const v4 = Buffer.concat([greeting(2), userpass('a', 'a'), Buffer.from([5, 1, 0, 1, 10, 1, 2, 3, 0x1f, 0x90])]);
  assert.deepEqual(drive([v4]).slice(2, 3), ['connect 1 10.1.2.3 8080']);
  const v6 = Buffer.concat([greeting(2), userpass('a', 'a'), Buffer.from([5, 1, 0, 4]), ipv6Bytes('fd7a:115c:a1e0::1'), Buffer.from([0, 80])]);
  assert.deepEqual(drive([v6]).slice(2, 3), ['connect 4 fd7a:115c:a1e0::1 80']);
});

test('a client offering only no-auth gets 0xFF; a non-SOCKS5 first byte gets no answer', () => {
  assert.equal(drive([greeting(0)])[0], `reject ${METHOD_NONE_ACCEPTABLE.toString('hex')}`);
  assert.equal(drive([Buffer.from([5, 0])])[0], `reject ${METHOD_NONE_ACCEPTABLE.toString('hex')}`);
  assert.equal(drive([Buffer.from('GET / HTTP/1.1\r\n')])[0], 'reject none');
  assert.equal(drive([Buffer.from([4, 1, 0, 80])])[0], 'reject none');
});

test('bad sub-negotiation version fails with status 0x01', () => {
  assert.deepEqual(drive([greeting(2), Buffer.from([5, 1, 0x61, 1, 0x61])]).slice(1), [`reject ${AUTH_FAILED.toString('hex')}`]);
});

test('BIND and UDP ASSOCIATE -> 0x07, unknown address type -> 0x08, bad domain -> 0x04', () => {
  const pre = Buffer.concat([greeting(2), userpass('a', 'a')]);
  const code = (req: number[]) => drive([pre, Buffer.from(req)])[2];
  assert.equal(code([5, 2, 0, 1, 1, 2, 3, 4, 0, 80]), `reject ${socksReply(SocksReply.CommandNotSupported).toString('hex')}`);
  assert.equal(code([5, 3, 0, 1, 0, 0, 0, 0, 0, 0]), `reject ${socksReply(SocksReply.CommandNotSupported).toString('hex')}`);
  assert.equal(code([5, 1, 0, 9]), `reject ${socksReply(SocksReply.AddressTypeNotSupported).toString('hex')}`);
  assert.equal(drive([pre, connectDomain('evil\r\nX: y', 80)])[2], `reject ${socksReply(SocksReply.HostUnreachable).toString('hex')}`);
  assert.equal(drive([pre, connectDomain('', 80)])[2], `reject ${socksReply(SocksReply.HostUnreachable).toString('hex')}`);
});

test('RFC 5952 formatting of IPv6 addresses round-trips', () => {
  for (const a of ['::1', '::', '1::', 'fe80::1:2', '2001:db8::8:800:200c:417a', '1:2:3:4:5:6:7:8', '2001:db8:0:1:1:1:1:1']) {
    assert.equal(formatIPv6(ipv6Bytes(a), 0), a);
  }
  assert.equal(formatIPv6(ipv6Bytes('::ffff:1.2.3.4'), 0), '::ffff:102:304');
});

test('device-side parsers: SOCKS reply length by address type, HTTP CONNECT reply head', () => {
  assert.deepEqual(parseSocksReply(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41])), { kind: 'reply', code: 0, length: 10 });
  assert.deepEqual(parseSocksReply(Buffer.from([5, 0, 0, 3, 3, 0x61])), { kind: 'need-more' });
  assert.deepEqual(parseSocksReply(Buffer.from([5, 5, 0, 9, 0])), { kind: 'reply', code: 5, length: 5 });
  assert.equal(parseSocksReply(Buffer.from([4, 0])).kind, 'invalid');
  assert.deepEqual(encodeSocksConnect({ host: 'example.com', port: 80 }), connectDomain('example.com', 80));
  assert.deepEqual(parseConnectReply(Buffer.from('HTTP/1.1 200 Connection established\r\n\r\nhi')), { kind: 'reply', status: 200, headLength: 39 });
  assert.deepEqual(parseConnectReply(Buffer.from('HTTP/1.1 200 OK\r\n')), { kind: 'need-more' });
  assert.equal(parseConnectReply(Buffer.from('SSH-2.0-OpenSSH\r\n')).kind, 'invalid');
});

// ---- fuzzing ------------------------------------------------------------------------------------------

/** Small deterministic PRNG so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomChunks(bytes: Buffer, r: () => number): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i < bytes.length) {
    const n = r() < 0.3 ? 1 : 1 + Math.floor(r() * 12);
    out.push(bytes.subarray(i, i + n));
    i += n;
  }
  return out;
}

function validHandshake(r: () => number): Buffer {
  const hosts = ['example.com', 'a', 'x.y.z.', 'localhost'];
  const parts = [greeting(...(r() < 0.5 ? [0, 2] : [2])), userpass('key'.repeat(1 + Math.floor(r() * 3)), 'key')];
  const kind = Math.floor(r() * 3);
  if (kind === 0) parts.push(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, 0, 80]));
  else if (kind === 1) parts.push(Buffer.concat([Buffer.from([5, 1, 0, 4]), ipv6Bytes('::1'), Buffer.from([1, 187])]));
  else parts.push(connectDomain(hosts[Math.floor(r() * hosts.length)]!, 443));
  if (r() < 0.5) parts.push(Buffer.from('pipelined payload'));
  return Buffer.concat(parts);
}

function mutate(b: Buffer, r: () => number): Buffer {
  const out = Buffer.from(b);
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const op = r();
    const at = Math.floor(r() * out.length);
    if (op < 0.6) out[at] = Math.floor(r() * 256);
    else if (op < 0.8) return Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]);
    else return Buffer.concat([out.subarray(0, at), Buffer.from([Math.floor(r() * 256)]), out.subarray(at)]);
  }
  return out;
}

test('fuzz: random and mutated input never throws and decides the same however it is chunked', () => {
  const r = rng(0x7a11_9a7e);
  let cases = 0;
  const kinds = new Set<string>();
  for (let i = 0; i < 20_000; i++) {
    let bytes: Buffer;
    const pick = r();
    if (pick < 0.25) {
      bytes = Buffer.alloc(Math.floor(r() * 64));
      for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(r() * 256);
      if (r() < 0.5 && bytes.length > 0) bytes[0] = 5;
    } else if (pick < 0.4) {
      bytes = validHandshake(r);
    } else {
      bytes = mutate(validHandshake(r), r);
      if (r() < 0.2) bytes = bytes.subarray(0, Math.floor(r() * bytes.length));
    }
    const whole = drive([bytes]);
    for (let k = 0; k < 3; k++) assert.deepEqual(drive(randomChunks(bytes, r)), whole, `input ${bytes.toString('hex')}`);
    assert.deepEqual(drive([...bytes].map((x) => Buffer.from([x]))), whole, `input ${bytes.toString('hex')} byte by byte`);
    for (const d of whole) kinds.add(d.split(' ')[0]!);
    cases++;
  }
  assert.equal(cases, 20_000);
  // The corpus must reach every kind of decision, or it is not testing much.
  for (const k of ['method', 'credentials', 'connect', 'reject', 'need-more', 'rest']) assert.ok(kinds.has(k), `fuzz never produced ${k}`);
});
