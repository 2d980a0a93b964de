// SOCKS5 CONNECT towards a device's SOCKS5 proxy (no authentication: the tailnet is the boundary), with
// pure parsers for the two replies. Domain names go out as ATYP 3 so DNS happens at the egress.
import { isIP } from 'node:net';
import type { FailureReason } from '../tailnet/dialer.js';
import type { Target } from './types.js';
import type { HandshakeProgress, UpstreamHandshake } from './upstream-handshake.js';

const GREETING = Buffer.from([0x05, 0x01, 0x00]);

/** Maps the device's reply code one to one onto our failure reasons (which map back to the same code). */
export function reasonFromSocksReply(code: number): FailureReason {
  switch (code) {
    case 0x02:
      return 'not-allowed';
    case 0x03:
      return 'network-down';
    case 0x04:
      return 'unreachable';
    case 0x05:
      return 'refused';
    case 0x06:
      return 'timeout';
    case 0x07:
    case 0x08:
      return 'protocol';
    default:
      return 'error';
  }
}

/** The CONNECT request for `target`. */
export function encodeSocksConnect(target: Target): Buffer {
  const family = isIP(target.host);
  let addr: Buffer;
  if (family === 4) {
    addr = Buffer.from([0x01, ...target.host.split('.').map(Number)]);
  } else if (family === 6) {
    addr = Buffer.concat([Buffer.from([0x04]), ipv6Bytes(target.host)]);
  } else {
    const name = Buffer.from(target.host, 'latin1');
    addr = Buffer.concat([Buffer.from([0x03, name.length]), name]);
  }
  const port = Buffer.allocUnsafe(2);
  port.writeUInt16BE(target.port);
  return Buffer.concat([Buffer.from([0x05, 0x01, 0x00]), addr, port]);
}

/** 16 bytes of a valid IPv6 literal (no brackets, no zone), including an embedded IPv4 tail. */
export function ipv6Bytes(text: string): Buffer {
  let hex = text;
  const tail: number[] = [];
  if (text.includes('.')) {
    const cut = text.lastIndexOf(':');
    const [a, b, c, d] = text.slice(cut + 1).split('.').map(Number) as [number, number, number, number];
    tail.push((a << 8) | b, (c << 8) | d);
    hex = text.slice(0, cut + 1);
    if (!hex.endsWith('::')) hex = hex.slice(0, -1);
  }
  const words = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const gap = hex.indexOf('::');
  const left = words(gap < 0 ? hex : hex.slice(0, gap));
  const right = gap < 0 ? [] : words(hex.slice(gap + 2));
  const zeros = 8 - tail.length - left.length - right.length;
  const groups = [...left, ...new Array<number>(gap < 0 ? 0 : zeros).fill(0), ...right, ...tail];
  const out = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(groups[i] ?? 0, i * 2);
  return out;
}

export type SocksReplyParse = { kind: 'need-more' } | { kind: 'reply'; code: number; length: number } | { kind: 'invalid'; message: string };

/** Parses a SOCKS5 reply (VER REP RSV ATYP BND.ADDR BND.PORT), so that bytes after it are not mistaken for it. */
export function parseSocksReply(b: Buffer): SocksReplyParse {
  if (b.length < 1) return { kind: 'need-more' };
  if (b[0] !== 0x05) return { kind: 'invalid', message: 'reply is not SOCKS5' };
  if (b.length < 5) return { kind: 'need-more' };
  let length: number;
  switch (b[3]) {
    case 0x01:
      length = 4 + 4 + 2;
      break;
    case 0x04:
      length = 4 + 16 + 2;
      break;
    case 0x03:
      length = 4 + 1 + b[4]! + 2;
      break;
    default:
      // A failure reply with a nonsense address still carries a usable code.
      if (b[1] !== 0x00) return { kind: 'reply', code: b[1]!, length: b.length };
      return { kind: 'invalid', message: `reply has unknown address type 0x${b[3]!.toString(16)}` };
  }
  if (b.length < length) return { kind: 'need-more' };
  return { kind: 'reply', code: b[1]!, length };
}

export class Socks5ConnectHandshake implements UpstreamHandshake {
  readonly hello = GREETING;
  private greeted = false;

  constructor(private readonly target: Target) {}

  feed(received: Buffer): HandshakeProgress {
    if (!this.greeted) {
      if (received.length < 2) return { kind: 'need-more' };
      if (received[0] !== 0x05) return { kind: 'fail', reason: 'protocol', message: 'greeting reply is not SOCKS5' };
      if (received[1] !== 0x00) return { kind: 'fail', reason: 'not-allowed', message: 'device proxy wants authentication' };
      this.greeted = true;
      return { kind: 'send', data: encodeSocksConnect(this.target), consumed: 2 };
    }
    const r = parseSocksReply(received);
    if (r.kind === 'need-more') return r;
    if (r.kind === 'invalid') return { kind: 'fail', reason: 'protocol', message: r.message };
    if (r.code !== 0x00) return { kind: 'fail', reason: reasonFromSocksReply(r.code), message: `device proxy replied 0x${r.code.toString(16).padStart(2, '0')}` };
    return { kind: 'done', consumed: r.length };
  }
}
