// The one SOCKS5 codec: the listener's server-side state machine, the client side used towards devices and
// tailscaled, and the two checked against each other.
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { test } from 'node:test';
import { DialError, type FailureReason } from '../src/core/failure.js';
import type { Target } from '../src/core/target.js';
import {
  AUTH_FAILED,
  encodeSocksConnect,
  METHOD_NONE_ACCEPTABLE,
  METHOD_USERPASS,
  parseSocksReply,
  reasonFromSocksReply,
  SOCKS5_DEVICE,
  Socks5ConnectHandshake,
  Socks5Parser,
  SocksReply,
  socksReply,
  type Socks5Step,
} from '../src/protocol/socks5.js';
import { SOCKS_FAILURES } from '../src/proxy/failures.js';
import { int, pick, randomHostname, randomIPv4, randomIPv6, rng } from './helpers/random.js';

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
  const v6 = Buffer.concat([greeting(2), userpass('a', 'a'), encodeSocksConnect({ host: 'fd7a:115c:a1e0::1', port: 80 })]);
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

test('BIND and UDP ASSOCIATE -> 0x07, unknown address type -> 0x08, bad domain -> 0x01', () => {
  const pre = Buffer.concat([greeting(2), userpass('a', 'a')]);
  const code = (req: number[]) => drive([pre, Buffer.from(req)])[2];
  assert.equal(code([5, 2, 0, 1, 1, 2, 3, 4, 0, 80]), `reject ${socksReply(SocksReply.CommandNotSupported).toString('hex')}`);
  assert.equal(code([5, 3, 0, 1, 0, 0, 0, 0, 0, 0]), `reject ${socksReply(SocksReply.CommandNotSupported).toString('hex')}`);
  assert.equal(code([5, 1, 0, 9]), `reject ${socksReply(SocksReply.AddressTypeNotSupported).toString('hex')}`);
  assert.equal(drive([pre, connectDomain('evil\r\nX: y', 80)])[2], `reject ${socksReply(SocksReply.GeneralFailure).toString('hex')}`);
  assert.equal(drive([pre, connectDomain('', 80)])[2], `reject ${socksReply(SocksReply.GeneralFailure).toString('hex')}`);
});

test('client side: SOCKS reply length by address type, CONNECT encoding', () => {
  assert.deepEqual(parseSocksReply(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41])), { kind: 'reply', code: 0, length: 10 });
  assert.deepEqual(parseSocksReply(Buffer.from([5, 0, 0, 3, 3, 0x61])), { kind: 'need-more' });
  assert.deepEqual(parseSocksReply(Buffer.from([5, 5, 0, 9, 0])), { kind: 'reply', code: 5, length: 5 });
  assert.equal(parseSocksReply(Buffer.from([4, 0])).kind, 'invalid');
  assert.deepEqual(encodeSocksConnect({ host: 'example.com', port: 80 }), connectDomain('example.com', 80));
});

test('the address encoder: IPv4 as ATYP 1, every IPv6 literal (IPv4-mapped ones too) as ATYP 4 with its 16 octets, names as ATYP 3', () => {
  assert.deepEqual(encodeSocksConnect({ host: '10.1.2.3', port: 443 }), Buffer.from([5, 1, 0, 1, 10, 1, 2, 3, 1, 187]));
  // RFC 1928 section 5: ATYP 4 is "a version-6 IP address, with a length of 16 octets"; RFC 4291 section 2.5.5.2 lays
  // an IPv4-mapped one out as 80 zero bits, 16 one bits, then the IPv4 address. Both spellings are the same address.
  const mapped = Buffer.from([5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 0, 80]);
  assert.deepEqual(encodeSocksConnect({ host: '::ffff:1.2.3.4', port: 80 }), mapped);
  assert.deepEqual(encodeSocksConnect({ host: '::ffff:102:304', port: 80 }), mapped);
  assert.deepEqual(encodeSocksConnect({ host: '::1', port: 1 }), Buffer.from([5, 1, 0, 4, ...Array<number>(15).fill(0), 1, 0, 1]));
  assert.deepEqual(encodeSocksConnect({ host: 'fe80::1%eth0', port: 80 }), encodeSocksConnect({ host: 'fe80::1', port: 80 }), 'no room for a zone');
  assert.deepEqual(encodeSocksConnect({ host: 'a'.repeat(255), port: 80 }).subarray(3, 5), Buffer.from([3, 255]));
  assert.throws(
    () => encodeSocksConnect({ host: 'a'.repeat(256), port: 80 }),
    (err: unknown) => err instanceof DialError && err.reason === 'error',
  );
});

test('client side: a reply is complete only with its whole address, whatever its type; bytes after it are not part of it', () => {
  const replies = [
    Buffer.from([5, 0, 0, 1, 100, 64, 0, 7, 0x1f, 0x90]),
    Buffer.from([5, 0, 0, 4, ...Array<number>(16).fill(0xab), 0, 80]),
    Buffer.from([5, 0, 0, 3, 4, 0x68, 0x6f, 0x73, 0x74, 0, 80]),
    Buffer.from([5, 4, 0, 1, 0, 0, 0, 0, 0, 0]),
  ];
  for (const reply of replies) {
    for (let n = 0; n < reply.length; n++) assert.deepEqual(parseSocksReply(reply.subarray(0, n)), { kind: 'need-more' }, `${reply.toString('hex')} cut at ${n}`);
    const expected = { kind: 'reply', code: reply[1], length: reply.length };
    assert.deepEqual(parseSocksReply(reply), expected);
    assert.deepEqual(parseSocksReply(Buffer.concat([reply, Buffer.from('HTTP/1.1 200 OK\r\n')])), expected);
  }
  assert.equal(parseSocksReply(Buffer.from([5, 0, 0, 9, 0, 0])).kind, 'invalid', 'a success must say where it is bound');
});

test('reply codes: one map for every server, so a device\'s answer reaches our client as the same code', () => {
  for (let code = 0x01; code <= 0x06; code++) assert.equal(SOCKS_FAILURES[reasonFromSocksReply(code)], code, `code ${code}`);
  assert.equal(reasonFromSocksReply(0x07), 'protocol');
  assert.equal(reasonFromSocksReply(0x08), 'protocol');
  assert.equal(reasonFromSocksReply(0x42), 'error');
  assert.equal(reasonFromSocksReply(0x01, 'unreachable'), 'unreachable', 'a server may give 0x01 a meaning');
  assert.equal(reasonFromSocksReply(0x05, 'unreachable'), 'refused', 'and only 0x01');
});

function failure(step: unknown): [FailureReason, string] {
  const s = step as { kind: string; reason: FailureReason; message: string };
  assert.equal(s.kind, 'fail');
  return [s.reason, s.message];
}

test('client handshake towards a device: greeting, CONNECT after the method reply, done at the reply with early bytes left', () => {
  const m = new Socks5ConnectHandshake({ host: 'example.com', port: 443 });
  assert.deepEqual(m.hello, Buffer.from([5, 1, 0]));
  assert.deepEqual(m.closed(), { reason: 'protocol', message: 'closed before answering the greeting' });
  assert.deepEqual(m.feed(Buffer.from([5])), { kind: 'need-more' });
  assert.deepEqual(m.feed(Buffer.from([5, 0])), { kind: 'continue', consumed: 2, send: connectDomain('example.com', 443) });
  const reply = Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]);
  assert.deepEqual(m.feed(reply.subarray(0, 7)), { kind: 'need-more' });
  assert.deepEqual(m.closed(), { reason: 'protocol', message: 'closed before replying to the CONNECT' });
  assert.deepEqual(m.feed(Buffer.concat([reply, Buffer.from('early')])), { kind: 'done', consumed: 10 });

  assert.deepEqual(failure(new Socks5ConnectHandshake({ host: 'a', port: 1 }).feed(Buffer.from([5, 0xff]))), ['not-allowed', 'proxy wants authentication (method 0xff)']);
  assert.equal(failure(new Socks5ConnectHandshake({ host: 'a', port: 1 }).feed(Buffer.from('HTTP/1.1 400')))[0], 'protocol');
  const refused = new Socks5ConnectHandshake({ host: 'a', port: 1 });
  refused.feed(Buffer.from([5, 0]));
  assert.deepEqual(failure(refused.feed(Buffer.from([5, 5, 0, 1, 0, 0, 0, 0, 0, 0]))), ['refused', 'CONNECT failed with SOCKS5 reply 5']);
  const general = new Socks5ConnectHandshake({ host: 'a', port: 1 }, SOCKS5_DEVICE);
  general.feed(Buffer.from([5, 0]));
  assert.equal(failure(general.feed(Buffer.from([5, 1, 0, 1, 0, 0, 0, 0, 0, 0])))[0], 'error');
});

test('client handshake, pipelined: greeting and CONNECT in one hello, a server\'s own reading of 0x01 and of an early close', () => {
  const peer = { pipelined: true, generalFailure: 'unreachable', closedBeforeReply: 'unreachable' } as const;
  const target = { host: '100.64.0.7', port: 8939 };
  const m = new Socks5ConnectHandshake(target, peer);
  assert.deepEqual(m.hello, Buffer.concat([Buffer.from([5, 1, 0]), encodeSocksConnect(target)]));
  assert.deepEqual(m.feed(Buffer.from([5, 0, 5])), { kind: 'continue', consumed: 2, send: null });
  assert.deepEqual(m.closed(), { reason: 'unreachable', message: 'closed before replying to the CONNECT' });
  assert.deepEqual(failure(m.feed(Buffer.from([5, 1, 0, 1, 0, 0, 0, 0, 0, 0]))), ['unreachable', 'CONNECT failed with SOCKS5 reply 1']);
  assert.throws(() => new Socks5ConnectHandshake({ host: 'x'.repeat(300), port: 1 }, peer), DialError, 'a bad target fails before anything is sent');
  assert.throws(() => new Socks5ConnectHandshake({ host: 'x'.repeat(300), port: 1 }), DialError);
});

// ---- properties ------------------------------------------------------------------------------------------

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

/** A target of every kind a client may name: IPv4, IPv6 in any text form (IPv4-mapped included), a DNS name. */
function randomTarget(r: () => number): Target {
  const p = r();
  const host = p < 0.25 ? randomIPv4(r) : p < 0.6 ? randomIPv6(r) : randomHostname(r);
  return { host, port: 1 + int(r, 65535) };
}

function isMapped(host: string): boolean {
  return isIP(host) === 6 && new URL(`http://[${host}]/`).hostname.startsWith('[::ffff:');
}

/**
 * The decision the server side must reach for a request the client side encoded for `target`. An IPv6 address comes
 * back in canonical text; the URL parser, an implementation of its own, says which.
 */
function expectedConnect(target: Target): string {
  const family = isIP(target.host);
  const host = family === 6 ? new URL(`http://[${target.host}]/`).hostname.slice(1, -1) : target.host;
  return `connect ${family === 4 ? 1 : family === 6 ? 4 : 3} ${host} ${target.port}`;
}

function validHandshake(r: () => number, target: Target, payload: Buffer | null): Buffer {
  const parts = [greeting(...(r() < 0.5 ? [0, 2] : [2])), userpass('key'.repeat(1 + Math.floor(r() * 3)), 'key'), encodeSocksConnect(target)];
  if (payload !== null) parts.push(payload);
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

test('property: the server side decides the same however its input is chunked, and reads back every request the client side encodes', () => {
  const r = rng(0x7a11_9a7e);
  const kinds = new Set<string>();
  const roundTrips = new Map<string, number>([['ipv4', 0], ['ipv6', 0], ['ipv4-mapped', 0], ['name', 0]]);
  const payload = Buffer.from('pipelined payload');
  for (let i = 0; i < 20_000; i++) {
    const target = randomTarget(r);
    const valid = validHandshake(r, target, r() < 0.5 ? payload : null);

    // Round trip: the client's encoding of the target, read by the server, is the same target, and encodes the same.
    const steps = first(valid);
    const connect = steps[2];
    assert.equal(connect?.kind, 'connect', `target ${JSON.stringify(target)}: ${steps.map(describe).join(', ')}`);
    assert.equal(describe(connect), expectedConnect(target), `target ${JSON.stringify(target)}`);
    if (!target.host.includes('%')) assert.deepEqual(encodeSocksConnect(connect.target), encodeSocksConnect(target));
    const kind = isIP(target.host) === 4 ? 'ipv4' : isMapped(target.host) ? 'ipv4-mapped' : isIP(target.host) === 6 ? 'ipv6' : 'name';
    roundTrips.set(kind, roundTrips.get(kind)! + 1);

    // Chunking: random bytes, the valid handshake, or a mutation of it, decided the same however it arrives.
    let bytes: Buffer;
    const p = r();
    if (p < 0.25) {
      bytes = Buffer.alloc(Math.floor(r() * 64));
      for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(r() * 256);
      if (r() < 0.5 && bytes.length > 0) bytes[0] = 5;
    } else if (p < 0.4) {
      bytes = valid;
    } else {
      bytes = mutate(valid, r);
      if (r() < 0.2) bytes = bytes.subarray(0, Math.floor(r() * bytes.length));
    }
    const whole = drive([bytes]);
    for (let k = 0; k < 3; k++) assert.deepEqual(drive(randomChunks(bytes, r)), whole, `input ${bytes.toString('hex')}`);
    assert.deepEqual(drive([...bytes].map((x) => Buffer.from([x]))), whole, `input ${bytes.toString('hex')} byte by byte`);
    if (bytes === valid) assert.equal(whole[2], expectedConnect(target));
    for (const d of whole) kinds.add(d.split(' ')[0]!);
  }
  // The corpus must reach every kind of decision and every kind of target, or it is not testing much.
  for (const k of ['method', 'credentials', 'connect', 'reject', 'need-more', 'rest']) assert.ok(kinds.has(k), `fuzz never produced ${k}`);
  for (const [kind, n] of roundTrips) assert.ok(n >= 500, `only ${n} round trips of ${kind} targets`);
});
