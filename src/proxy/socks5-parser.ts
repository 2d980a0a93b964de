// SOCKS5 server-side handshake (RFC 1928 + RFC 1929) as a pure state machine: bytes in, decisions out.
// No I/O here, so the listener stays a thin shell and the parser can be fuzzed with arbitrary chunkings.
import { isIP } from 'node:net';
import type { Target } from '../routing/types.js';

export const SOCKS_VERSION = 0x05;
export const USERPASS_VERSION = 0x01;

export const SocksMethod = { NoAuth: 0x00, UserPass: 0x02, NoAcceptable: 0xff } as const;
export const SocksCommand = { Connect: 0x01, Bind: 0x02, UdpAssociate: 0x03 } as const;
export const SocksAddressType = { IPv4: 0x01, Domain: 0x03, IPv6: 0x04 } as const;

/** RFC 1928 section 6 reply codes. */
export const SocksReply = {
  Succeeded: 0x00,
  GeneralFailure: 0x01,
  NotAllowed: 0x02,
  NetworkUnreachable: 0x03,
  HostUnreachable: 0x04,
  ConnectionRefused: 0x05,
  TtlExpired: 0x06,
  CommandNotSupported: 0x07,
  AddressTypeNotSupported: 0x08,
} as const;
export type SocksReplyCode = (typeof SocksReply)[keyof typeof SocksReply];

/** Method selection answers. Shared constants: the listener writes them without allocating. */
export const METHOD_USERPASS = Buffer.from([SOCKS_VERSION, SocksMethod.UserPass]);
export const METHOD_NONE_ACCEPTABLE = Buffer.from([SOCKS_VERSION, SocksMethod.NoAcceptable]);
export const AUTH_OK = Buffer.from([USERPASS_VERSION, 0x00]);
export const AUTH_FAILED = Buffer.from([USERPASS_VERSION, 0x01]);

// BND.ADDR/BND.PORT are zeros: the address we used towards the device means nothing to the client and
// would only leak our side of the tailnet.
const REPLIES: Buffer[] = [];
for (let code = 0; code <= 0x08; code++) REPLIES.push(Buffer.from([SOCKS_VERSION, code, 0x00, SocksAddressType.IPv4, 0, 0, 0, 0, 0, 0]));

/** The 10-byte reply to a request with the given code. */
export function socksReply(code: SocksReplyCode): Buffer {
  return REPLIES[code]!;
}

export type Socks5Step =
  /** Not enough bytes for the next decision yet. */
  | { kind: 'need-more' }
  /** Greeting offers username/password: answer with `reply` and expect the sub-negotiation. */
  | { kind: 'method'; reply: Buffer }
  /** RFC 1929 credentials, raw bytes (the caller checks them and answers AUTH_OK or AUTH_FAILED). */
  | { kind: 'credentials'; username: Buffer; password: Buffer }
  /** A CONNECT request. Bytes that followed it are in `rest()`. */
  | { kind: 'connect'; target: Target; addressType: number }
  /** Handshake is over: write `reply` if not null, then close. */
  | { kind: 'reject'; reply: Buffer | null; reason: string };

const enum Phase {
  Greeting,
  Credentials,
  Request,
  Done,
  Failed,
}

const NEED_MORE: Socks5Step = Object.freeze({ kind: 'need-more' });
const EMPTY = Buffer.alloc(0);

// Names go to the device as they are (HTTP CONNECT request line or SOCKS ATYP 3), so anything that could
// break out of a request line is refused here rather than escaped later.
const HOSTNAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/;

/** A host as it may appear in a Target: an IP literal or a plain DNS name. */
export function isValidTargetHost(host: string): boolean {
  return host.length > 0 && host.length <= 253 + 1 && (HOSTNAME.test(host) || isIP(host) !== 0);
}

/** RFC 5952 text form of a 16-byte IPv6 address (longest run of zero groups collapsed). */
export function formatIPv6(buf: Buffer, offset: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(offset + i * 2));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * One parser per client connection. Call push() with every chunk, then next() until it returns
 * need-more or a terminal step (connect / reject). Decisions depend only on the byte stream, never on
 * how it was chunked.
 */
export class Socks5Parser {
  private phase = Phase.Greeting;
  private buf: Buffer = EMPTY;

  push(chunk: Buffer): void {
    if (this.phase === Phase.Failed) return;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** True once a terminal decision (connect or reject) has been returned. */
  get finished(): boolean {
    return this.phase === Phase.Done || this.phase === Phase.Failed;
  }

  /** Bytes the client sent after its CONNECT request (pipelined data for the target). */
  rest(): Buffer {
    const rest = this.buf;
    this.buf = EMPTY;
    return rest;
  }

  next(): Socks5Step {
    switch (this.phase) {
      case Phase.Greeting:
        return this.greeting();
      case Phase.Credentials:
        return this.credentials();
      case Phase.Request:
        return this.request();
      default:
        return NEED_MORE;
    }
  }

  private fail(reply: Buffer | null, reason: string): Socks5Step {
    this.phase = Phase.Failed;
    this.buf = EMPTY;
    return { kind: 'reject', reply, reason };
  }

  private consume(n: number): void {
    this.buf = n === this.buf.length ? EMPTY : this.buf.subarray(n);
  }

  private greeting(): Socks5Step {
    const b = this.buf;
    if (b.length < 1) return NEED_MORE;
    if (b[0] !== SOCKS_VERSION) return this.fail(null, `not a SOCKS5 greeting (version byte 0x${b[0]!.toString(16).padStart(2, '0')})`);
    if (b.length < 2) return NEED_MORE;
    const n = b[1]!;
    if (n === 0) return this.fail(METHOD_NONE_ACCEPTABLE, 'greeting offers no methods');
    if (b.length < 2 + n) return NEED_MORE;
    let offered = false;
    for (let i = 2; i < 2 + n; i++) if (b[i] === SocksMethod.UserPass) offered = true;
    this.consume(2 + n);
    if (!offered) return this.fail(METHOD_NONE_ACCEPTABLE, 'client does not offer username/password authentication');
    this.phase = Phase.Credentials;
    return { kind: 'method', reply: METHOD_USERPASS };
  }

  private credentials(): Socks5Step {
    const b = this.buf;
    if (b.length < 1) return NEED_MORE;
    if (b[0] !== USERPASS_VERSION) return this.fail(AUTH_FAILED, `bad username/password sub-negotiation version 0x${b[0]!.toString(16).padStart(2, '0')}`);
    if (b.length < 2) return NEED_MORE;
    const ulen = b[1]!;
    if (b.length < 3 + ulen) return NEED_MORE;
    const plen = b[2 + ulen]!;
    const end = 3 + ulen + plen;
    if (b.length < end) return NEED_MORE;
    // Copies: the caller keeps them across an await while this buffer may be replaced.
    const username = Buffer.from(b.subarray(2, 2 + ulen));
    const password = Buffer.from(b.subarray(3 + ulen, end));
    this.consume(end);
    this.phase = Phase.Request;
    return { kind: 'credentials', username, password };
  }

  private request(): Socks5Step {
    const b = this.buf;
    if (b.length < 1) return NEED_MORE;
    if (b[0] !== SOCKS_VERSION) return this.fail(socksReply(SocksReply.GeneralFailure), 'request has a bad version byte');
    if (b.length < 2) return NEED_MORE;
    if (b[1] !== SocksCommand.Connect) {
      const what = b[1] === SocksCommand.Bind ? 'BIND' : b[1] === SocksCommand.UdpAssociate ? 'UDP ASSOCIATE' : `command 0x${b[1]!.toString(16)}`;
      return this.fail(socksReply(SocksReply.CommandNotSupported), `${what} is not supported`);
    }
    if (b.length < 4) return NEED_MORE;
    const atyp = b[3]!;
    let host: string;
    let end: number;
    switch (atyp) {
      case SocksAddressType.IPv4:
        end = 4 + 4 + 2;
        if (b.length < end) return NEED_MORE;
        host = `${b[4]}.${b[5]}.${b[6]}.${b[7]}`;
        break;
      case SocksAddressType.IPv6:
        end = 4 + 16 + 2;
        if (b.length < end) return NEED_MORE;
        host = formatIPv6(b, 4);
        break;
      case SocksAddressType.Domain: {
        if (b.length < 5) return NEED_MORE;
        const len = b[4]!;
        end = 5 + len + 2;
        if (b.length < end) return NEED_MORE;
        host = b.toString('latin1', 5, 5 + len);
        if (!isValidTargetHost(host)) return this.fail(socksReply(SocksReply.HostUnreachable), 'domain name is not a valid host name');
        break;
      }
      default:
        return this.fail(socksReply(SocksReply.AddressTypeNotSupported), `address type 0x${atyp.toString(16)} is not supported`);
    }
    const port = b.readUInt16BE(end - 2);
    this.consume(end);
    this.phase = Phase.Done;
    return { kind: 'connect', target: { host, port }, addressType: atyp };
  }
}
