// What `npm run fuzz` feeds and what it checks. Each target turns (rng) into an input of bytes (written to a file on a
// finding) and runs it against the code under test; an oracle that does not hold throws FuzzFinding. Besides "no
// exception escapes" (any other throw is a finding too) each states the invariants of its code.
import { isUtf8 } from 'node:buffer';
import { isValidTargetHost, type Target } from '../../src/core/target.js';
import type { HandshakeMachine } from '../../src/protocol/handshake.js';
import {
  endToEndHeaders,
  formatAuthority,
  HttpConnectHandshake,
  parseAbsoluteHttpUrl,
  parseAuthority,
  parseBasicCredentials,
  requestHeadProblem,
  scanConnectHead,
  type ConnectHeadScan,
} from '../../src/protocol/http.js';
import { TsDialHandshake } from '../../src/protocol/localapi.js';
import { parseProxyUser, PROXY_USER_REFUSAL_DETAILS, SESSION_IDLE_MAX_MINUTES } from '../../src/protocol/proxy-user.js';
import { encodeSocksConnect, parseSocksReply, Socks5ConnectHandshake, Socks5Parser, SOCKS5_DEVICE, type Socks5Step } from '../../src/protocol/socks5.js';
import { int, pick, randomHostname, randomIPv4, randomIPv6 } from '../helpers/random.js';
import { chunk, mutate, randomBytes, text, type Rng } from './mutate.js';

export class FuzzFinding extends Error {
  override name = 'FuzzFinding';
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new FuzzFinding(what);
}

export interface FuzzTarget {
  readonly name: string;
  /** Share of the inputs. */
  readonly weight: number;
  generate(r: Rng): Buffer;
  /** `r` drives choices made while running (chunkings). Throws on a finding. */
  run(input: Buffer, r: Rng): void | Promise<void>;
}

/** Neither CR, LF, NUL nor any other control byte, nor a space: what may go on a request line or into ATYP 3. */
function cleanHost(host: string): boolean {
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

function checkTarget(t: Target, where: string): void {
  check(isValidTargetHost(t.host) && cleanHost(t.host), `${where}: target host ${JSON.stringify(t.host)} is not a clean host`);
  check(Number.isInteger(t.port) && t.port >= 0 && t.port <= 65535, `${where}: port ${t.port}`);
}

// ---- SOCKS5 ----------------------------------------------------------------------------------------------

const HOST_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789.-_';

function socksRequest(r: Rng): Buffer {
  const greetingMethods = r() < 0.9 ? [2, ...Array.from({ length: int(r, 3) }, () => int(r, 4))] : Array.from({ length: int(r, 4) }, () => int(r, 256));
  const user = Buffer.from(text(r, 'abcdefghijklmnopqrstuvwxyz0123456789-_', 0, 40), 'latin1');
  const pass = r() < 0.7 ? user : Buffer.from(text(r, 'abcdefghij', 0, 20), 'latin1');
  let address: Buffer;
  const atyp = r() < 0.95 ? pick(r, [1, 3, 4]) : int(r, 256);
  if (atyp === 1) address = Buffer.from(randomIPv4(r).split('.').map(Number));
  else if (atyp === 4) {
    address = Buffer.alloc(16);
    for (let i = 0; i < 16; i++) address[i] = r() < 0.5 ? 0 : int(r, 256);
  } else {
    const name = Buffer.from(r() < 0.5 ? randomHostname(r) : text(r, HOST_ALPHABET, 0, 70), 'latin1');
    address = Buffer.concat([Buffer.from([Math.min(255, name.length)]), name.subarray(0, 255)]);
  }
  const command = r() < 0.9 ? 1 : int(r, 5);
  return Buffer.concat([
    Buffer.from([5, greetingMethods.length & 0xff, ...greetingMethods]),
    Buffer.from([1, user.length]),
    user,
    Buffer.from([pass.length]),
    pass,
    Buffer.from([5, command, 0, atyp]),
    address,
    Buffer.from([int(r, 256), int(r, 256)]),
    randomBytes(r, r() < 0.5 ? 0 : 40),
  ]);
}

/** Drives the server parser over `chunks` as the listener does; the decisions, and the bytes left after CONNECT. */
function driveSocks(input: Buffer, chunks: Buffer[]): string[] {
  const p = new Socks5Parser();
  const out: string[] = [];
  let fed = 0;
  for (const c of chunks) {
    p.push(c);
    fed += c.length;
    for (;;) {
      const s: Socks5Step = p.next();
      if (s.kind === 'need-more') break;
      switch (s.kind) {
        case 'method':
          out.push(`method ${s.reply.toString('hex')}`);
          continue;
        case 'credentials':
          check(s.username.length <= 255 && s.password.length <= 255, 'credentials longer than RFC 1929 allows');
          out.push(`credentials ${s.username.toString('hex')} ${s.password.toString('hex')}`);
          continue;
        case 'connect': {
          checkTarget(s.target, 'socks5 connect');
          const rest = p.rest();
          check(rest.length <= fed, 'rest() holds more bytes than were pushed');
          // What follows the request is exactly the input's tail: nothing consumed twice, nothing invented.
          check(rest.equals(input.subarray(fed - rest.length, fed)), 'rest() is not the tail of what was pushed');
          out.push(`connect ${s.addressType} ${s.target.host} ${s.target.port} rest-from ${fed - rest.length}`);
          // The client side encodes the target so that the server side reads the same target back.
          const back = new Socks5Parser();
          back.push(Buffer.from([5, 1, 2, 1, 0, 0]));
          back.next();
          back.next();
          back.push(encodeSocksConnect(s.target));
          const read = back.next();
          check(read.kind === 'connect' && read.target.host === s.target.host && read.target.port === s.target.port, `encodeSocksConnect(${s.target.host}) is not read back as itself`);
          return out;
        }
        case 'reject':
          check(s.reply === null || s.reply.length === 2 || s.reply.length === 10, 'reject reply of unexpected length');
          out.push(`reject ${s.reply?.toString('hex') ?? 'none'}`);
          check(p.finished, 'not finished after reject');
          return out;
      }
    }
  }
  out.push('need-more');
  return out;
}

/** Runs a client-side machine as handshake.ts's driver does (including its 16 KiB bound); its decision. */
function driveMachine(machine: HandshakeMachine, chunks: Buffer[]): string {
  let received = Buffer.alloc(0);
  /** Stream offset of received[0]: decisions are compared by where in the stream they fall, not by read sizes. */
  let offset = 0;
  const sent: string[] = [];
  for (const c of chunks) {
    received = Buffer.concat([received, c]);
    for (;;) {
      const step = machine.feed(received);
      if (step.kind === 'need-more') {
        if (received.length > 16 * 1024) return `fail protocol too-large ${sent.join(',')}`;
        break;
      }
      if (step.kind === 'continue') {
        check(step.consumed >= 0 && step.consumed <= received.length, 'continue consumed more than received');
        received = received.subarray(step.consumed);
        offset += step.consumed;
        sent.push(step.send?.toString('hex') ?? '-');
        continue;
      }
      if (step.kind === 'done') {
        check(step.consumed >= 0 && step.consumed <= received.length, 'done consumed more than received');
        return `done at ${offset + step.consumed} ${sent.join(',')}`;
      }
      return `fail ${step.reason} ${sent.join(',')}`;
    }
  }
  return `need-more ${sent.join(',')}`;
}

function socksReplyBytes(r: Rng): Buffer {
  const atyp = pick(r, [1, 3, 4, int(r, 256)]);
  const addr = atyp === 1 ? randomBytes(r, 4) : atyp === 4 ? Buffer.alloc(16) : Buffer.concat([Buffer.from([int(r, 20)]), randomBytes(r, 20)]);
  return Buffer.concat([Buffer.from([5, r() < 0.8 ? 0 : int(r, 256)]), Buffer.from([5, int(r, 10), 0, atyp]), addr, randomBytes(r, 2), randomBytes(r, 10)]);
}

const socks5: FuzzTarget = {
  name: 'socks5',
  weight: 3,
  generate(r) {
    const server = r() < 0.75;
    const base = server ? socksRequest(r) : socksReplyBytes(r);
    const body = r() < 0.1 ? randomBytes(r, 80) : r() < 0.25 ? base : mutate(r, base, server ? socksRequest(r) : socksReplyBytes(r));
    return Buffer.concat([Buffer.from([server ? 0 : 1]), body]);
  },
  run(input, r) {
    const data = input.subarray(1);
    if (input[0] === 0) {
      const whole = driveSocks(data, [data]).join('\n');
      const pieces = driveSocks(data, chunk(r, data)).join('\n');
      // rest-from differs only in where the last push ended; the decisions must not.
      const strip = (s: string) => s.replace(/ rest-from \d+$/m, '');
      check(strip(whole) === strip(pieces), `socks5 server: decision depends on chunking:\n${whole}\n--- vs ---\n${pieces}`);
      return;
    }
    const parsed = parseSocksReply(data);
    if (parsed.kind === 'reply') check(parsed.length <= data.length && parsed.length > 0, 'parseSocksReply length beyond the bytes given');
    const target = { host: r() < 0.5 ? randomIPv6(r) : randomHostname(r), port: 1 + int(r, 65535) };
    const whole = driveMachine(new Socks5ConnectHandshake(target, SOCKS5_DEVICE), [data]);
    const pieces = driveMachine(new Socks5ConnectHandshake(target, SOCKS5_DEVICE), chunk(r, data));
    check(whole === pieces, `socks5 client: decision depends on chunking: ${whole} vs ${pieces}`);
  },
};

// ---- HTTP --------------------------------------------------------------------------------------------------

const HEADER_NAMES = ['Host', 'Content-Length', 'Transfer-Encoding', 'Proxy-Authorization', 'Connection', 'Proxy-Connection', 'Keep-Alive', 'TE', 'Upgrade', 'Expect', 'X-Custom', 'host', 'CONTENT-LENGTH', 'transfer-encoding'];

function headerValue(r: Rng, name: string): string {
  switch (name.toLowerCase()) {
    case 'content-length':
      return pick(r, ['0', '5', '05', '+5', '-1', '5, 5', ' 5 ', '99999999999999999999', text(r, '0123456789', 1, 6)]);
    case 'transfer-encoding':
      return pick(r, ['chunked', 'Chunked', 'gzip, chunked', 'chunked, gzip', 'identity', ' chunked', 'chunked\t', 'x']);
    case 'proxy-authorization': {
      const creds = `${text(r, 'abcdef0123-', 0, 20)}:${text(r, 'abcdef0123-', 0, 20)}`;
      return pick(r, [`Basic ${Buffer.from(creds).toString('base64')}`, `basic  ${Buffer.from(creds).toString('base64')} `, `Basic ${text(r, 'A=+/_-!', 0, 12)}`, 'Bearer x', '']);
    }
    case 'connection':
    case 'proxy-connection':
      return pick(r, ['close', 'keep-alive', 'x-custom, te', ' , ,', 'Upgrade']);
    default:
      return text(r, 'abcdefghij0123456789 ;=,.', 0, 30);
  }
}

function requestHead(r: Rng): string {
  const host = r() < 0.3 ? `[${randomIPv6(r)}]` : r() < 0.5 ? randomIPv4(r) : randomHostname(r);
  const port = r() < 0.5 ? '' : `:${pick(r, [String(int(r, 70000)), '0', '080', '', 'x'])}`;
  const connect = r() < 0.3;
  const target = connect ? `${host}${port || ':443'}` : `${pick(r, ['http://', 'HTTP://', 'https://', '', 'http://user@'])}${host}${port}${pick(r, ['', '/', '/a?b', '?q', '#f', '/%0d%0a', '/a b'])}`;
  const lines = [`${connect ? 'CONNECT' : pick(r, ['GET', 'POST', 'PUT'])} ${target} HTTP/1.${int(r, 2)}`];
  const count = int(r, 7);
  for (let i = 0; i < count; i++) {
    const name = r() < 0.9 ? pick(r, HEADER_NAMES) : text(r, 'abcXYZ-', 0, 12);
    lines.push(`${name}: ${headerValue(r, name)}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** The head split as a permissive parser would: what our checks must cope with whatever llhttp lets through. */
function splitHead(head: string): { method: string; target: string; version: string; raw: string[] } {
  const lines = head.split('\r\n');
  const [method = '', target = '', version = ''] = lines[0]!.split(' ');
  const raw: string[] = [];
  for (const line of lines.slice(1)) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon < 0) raw.push(line, '');
    else raw.push(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return { method, target, version: version.replace(/^HTTP\//, ''), raw };
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

function runRequestHead(head: string): void {
  const { method, target, version, raw } = splitHead(head);
  const problem = requestHeadProblem(raw, version);
  if (problem === null) {
    let cl = 0;
    let te = 0;
    let hosts = 0;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      check(!/[\0-\x08\x0a-\x1f\x7f]/.test(raw[i]! + raw[i + 1]!), 'a control character passed requestHeadProblem');
      if (name === 'content-length') cl++;
      if (name === 'transfer-encoding') {
        te++;
        check(raw[i + 1]!.trim().toLowerCase() === 'chunked', 'a coding other than chunked passed');
      }
      if (name === 'host') hosts++;
    }
    check(cl <= 1 && te <= 1 && !(cl === 1 && te === 1) && hosts <= 1, 'framing passed requestHeadProblem that should not');
  }
  if (method === 'CONNECT') {
    const t = parseAuthority(target);
    if (t !== null) {
      checkTarget(t, 'CONNECT authority');
      const back = parseAuthority(formatAuthority(t));
      check(back !== null && back.host === t.host && back.port === t.port, `formatAuthority(${t.host}) does not parse back`);
    }
  } else {
    const a = parseAbsoluteHttpUrl(target);
    if (a !== null) {
      checkTarget(a.target, 'absolute-form URL');
      check(a.path.startsWith('/') && !a.path.includes('#'), `path ${JSON.stringify(a.path)}`);
      check(!a.authority.includes('@'), 'credentials in the authority passed');
      check(target.includes(a.authority), 'authority not taken from the URL');
    }
  }
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'proxy-authorization') {
      const c = parseBasicCredentials(raw[i + 1]);
      if (c !== null) check(!c.username.includes(0x3a), 'a user name with a colon');
    }
  }
  const kept = endToEndHeaders(raw, new Set(['expect', 'host']));
  check(kept.length % 2 === 0, 'odd header list');
  for (let i = 0; i < kept.length; i += 2) {
    const name = kept[i]!.toLowerCase();
    check(!HOP_BY_HOP.includes(name) && name !== 'host' && name !== 'expect', `hop-by-hop header ${name} kept`);
  }
}

function responseHead(r: Rng): Buffer {
  const status = pick(r, ['200', '200', '407', '502', '101', '2000', '20', 'abc']);
  const lines = [`${pick(r, ['HTTP/1.1', 'HTTP/1.0', 'HTTP/2', 'HTTP/1.1 '])} ${status} ${text(r, 'abcdefg ', 0, 20)}`];
  for (let i = int(r, 4); i > 0; i--) lines.push(`${text(r, 'abcXYZ-', 1, 10)}: ${text(r, 'abc ;=', 0, 20)}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), randomBytes(r, 30)]);
}

const SCAN_MAX_BYTES = 512;

function sameScan(a: ConnectHeadScan, b: ConnectHeadScan): boolean {
  if (a.kind !== 'connect' || b.kind !== 'connect') return a.kind === b.kind;
  return a.authority === b.authority && a.authorization === b.authorization && a.headLength === b.headLength;
}

/**
 * The HTTP listener's own CONNECT reader (proxy/connect-front.ts) sees a head grow chunk by chunk: a decision, once
 * made on a prefix, must be the one every longer prefix gets; a CONNECT it reads must end at the head's blank line
 * and carry nothing a header line could smuggle.
 */
function runConnectScan(data: Buffer, r: Rng): void {
  const whole = scanConnectHead(data, SCAN_MAX_BYTES);
  let decided: ConnectHeadScan | undefined;
  for (let end = 0; end <= data.length; end += 1 + int(r, 8)) {
    const scan = scanConnectHead(data.subarray(0, end), SCAN_MAX_BYTES);
    if (decided !== undefined) check(sameScan(scan, decided), 'CONNECT scan: a longer prefix changed the decision');
    else if (scan.kind !== 'need-more') decided = scan;
  }
  if (decided !== undefined) check(sameScan(whole, decided), 'CONNECT scan: the whole head disagrees with its prefix');
  if (whole.kind !== 'connect') return;
  check(whole.headLength <= data.length && data.toString('latin1', whole.headLength - 4, whole.headLength) === '\r\n\r\n', 'CONNECT scan: head end misplaced');
  check(data.indexOf('\r\n\r\n', 0, 'latin1') + 4 === whole.headLength, 'CONNECT scan: not the first blank line');
  check(!/[\0-\x08\x0a-\x1f\x7f]/.test(whole.authority + (whole.authorization ?? '')), 'CONNECT scan: a control character in the target or credentials');
}

const http: FuzzTarget = {
  name: 'http',
  weight: 3,
  generate(r) {
    const request = r() < 0.6;
    const base = request ? Buffer.from(requestHead(r), 'latin1') : responseHead(r);
    const body = r() < 0.25 ? base : mutate(r, base, request ? Buffer.from(requestHead(r), 'latin1') : responseHead(r));
    return Buffer.concat([Buffer.from([request ? 0 : 1]), body]);
  },
  run(input, r) {
    const data = input.subarray(1);
    if (input[0] === 0) {
      runRequestHead(data.toString('latin1'));
      runConnectScan(data, r);
      return;
    }
    // A device's answer to our CONNECT, and tailscaled's to the ts-dial upgrade, read as a stream.
    const target = { host: 'device.example', port: 443 };
    const pieces = chunk(r, data);
    check(driveMachine(new HttpConnectHandshake(target), [data]) === driveMachine(new HttpConnectHandshake(target), pieces), 'CONNECT reply: decision depends on chunking');
    check(driveMachine(new TsDialHandshake(target.host, target.port), [data]) === driveMachine(new TsDialHandshake(target.host, target.port), pieces), 'ts-dial reply: decision depends on chunking');
    const end = data.indexOf('\r\n\r\n', 0, 'latin1');
    const decision = driveMachine(new HttpConnectHandshake(target), [data]);
    if (decision.startsWith('done')) check(decision.startsWith(`done at ${end + 4} `), 'CONNECT reply: head end misplaced');
  },
};

// ---- proxy user name -------------------------------------------------------------------------------------------

const PARAM_VALUES: Record<string, (r: Rng) => string> = {
  session: (r) => pick(r, [text(r, 'abcXYZ019_', 1, 64), 'x'.repeat(65), '', 'a-b', 'é']),
  sesstime: (r) => pick(r, [String(1 + int(r, 1440)), '0', '1441', '01', '-1', '1e3', '']),
  country: (r) => pick(r, ['de', 'US', 'd', 'deu', '1a', '']),
  device: (r) => pick(r, [text(r, 'abc019_.', 1, 64), String(int(r, 1000)), 'x'.repeat(65), 'a-b', '']),
  strict: (r) => pick(r, ['1', '0', 'true', '']),
};

const proxyUser: FuzzTarget = {
  name: 'proxy-user',
  weight: 3,
  generate(r) {
    const key = r() < 0.1 ? randomBytes(r, 30) : Buffer.from(text(r, 'abcdefXYZ0123456789-_', 1, 48), 'latin1');
    const pairs: string[] = [];
    for (let i = int(r, 6); i > 0; i--) {
      const name = r() < 0.9 ? pick(r, Object.keys(PARAM_VALUES)) : text(r, 'abcz', 0, 8);
      pairs.push(`${name}-${(PARAM_VALUES[name] ?? ((x: Rng) => text(x, 'abc', 0, 5)))(r)}`);
    }
    let user = pairs.length === 0 ? key : Buffer.concat([key, Buffer.from(`-${pairs.join('-')}`, 'latin1')]);
    if (r() < 0.5) user = mutate(r, user, key, 3);
    const password = r() < 0.85 ? key : mutate(r, key, user, 2);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(Math.min(password.length, 0xffff));
    return Buffer.concat([len, password.subarray(0, 0xffff), user]);
  },
  run(input) {
    if (input.length < 2) return;
    const plen = input.readUInt16BE(0);
    const password = input.subarray(2, 2 + plen);
    const user = input.subarray(2 + plen);
    const d = parseProxyUser(user, password);
    if (!d.ok) {
      check(d.reason === 'auth' || d.reason === 'user-parameter', `refusal reason ${String(d.reason)}`);
      check(PROXY_USER_REFUSAL_DETAILS.includes(d.detail), `refusal detail not from the fixed list: ${d.detail}`);
      return;
    }
    check(d.key.equals(password) && password.length > 0, 'accepted key is not the password');
    check(user.subarray(0, password.length).equals(password) && (user.length === password.length || user[password.length] === 0x2d), 'accepted a user name that does not start with the password');
    check(isUtf8(d.key), 'accepted a key that is not UTF-8');
    const p = d.params;
    check(p.session === undefined || /^[A-Za-z0-9_]{1,64}$/.test(p.session), 'session out of its rule');
    check(p.sessionIdleMinutes === undefined || (p.session !== undefined && Number.isInteger(p.sessionIdleMinutes) && p.sessionIdleMinutes >= 1 && p.sessionIdleMinutes <= SESSION_IDLE_MAX_MINUTES), 'sesstime out of its rule');
    check(p.country === undefined || /^[a-z]{2}$/.test(p.country), 'country out of its rule');
    check(p.device === undefined || /^[A-Za-z0-9_.]{1,64}$/.test(p.device), 'device out of its rule');
    check(!p.strict || p.session !== undefined, 'strict without session');
  },
};

export const SYNC_TARGETS: readonly FuzzTarget[] = [socks5, http, proxyUser];

