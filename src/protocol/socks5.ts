// SOCKS5 (RFC 1928, with RFC 1929 username/password) as pure code: bytes in, decisions out, no I/O. The server side
// is the listener's state machine; the client side asks a device's SOCKS5 proxy, or tailscaled's SOCKS5 server,
// to CONNECT. Both sides share one set of codes and one address encoding, so what one side writes the other reads.
import { DialError, type FailureReason } from '../core/failure.js';
import { formatIPv6, ipFamily, writeIPv4, writeIPv6 } from '../core/ip.js';
import { isValidTargetHost, type Target } from '../core/target.js';
import type { HandshakeFailure, HandshakeMachine, HandshakeStep } from './handshake.js';

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

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, '0')}`;
}

// ---- server side ---------------------------------------------------------------------------------------

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

const NEED_MORE: Socks5Step & HandshakeStep = Object.freeze({ kind: 'need-more' });
const EMPTY = Buffer.alloc(0);

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
    if (b[0] !== SOCKS_VERSION) return this.fail(null, `not a SOCKS5 greeting (version byte ${hex(b[0]!)})`);
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
    if (b[0] !== USERPASS_VERSION) return this.fail(AUTH_FAILED, `bad username/password sub-negotiation version ${hex(b[0]!)}`);
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
        // A name that is not a host name (CR, LF, NUL, spaces, empty) is a malformed request, which RFC 1928 has no
        // code for: 0x01, as 0x04 would claim a lookup that never happened. It never reaches a device.
        if (!isValidTargetHost(host)) return this.fail(socksReply(SocksReply.GeneralFailure), 'domain name is not a valid host name');
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

// ---- client side ---------------------------------------------------------------------------------------

/** Offers "no authentication" only: the servers we dial (device proxies, tailscaled) sit behind the tailnet. */
const GREETING_NO_AUTH = Buffer.from([SOCKS_VERSION, 0x01, SocksMethod.NoAuth]);

/**
 * What a reply code from a server we dialled means for our client (proxy/failures.ts maps the other way).
 * `generalFailure` is what 0x01 means from that server: RFC 1928 gives it no cause, but a server may use it for one.
 */
export function reasonFromSocksReply(code: number, generalFailure: FailureReason = 'error'): FailureReason {
  switch (code) {
    case SocksReply.GeneralFailure:
      return generalFailure;
    case SocksReply.NotAllowed:
      return 'not-allowed';
    case SocksReply.NetworkUnreachable:
      return 'network-down';
    case SocksReply.HostUnreachable:
      return 'unreachable';
    case SocksReply.ConnectionRefused:
      return 'refused';
    case SocksReply.TtlExpired:
      return 'timeout';
    case SocksReply.CommandNotSupported:
    case SocksReply.AddressTypeNotSupported:
      return 'protocol';
    default:
      return 'error';
  }
}

/**
 * The CONNECT request for `target`. An IP literal goes as its address type: an IPv6 one, IPv4-mapped ones such as
 * `::ffff:1.2.3.4` included, as ATYP 4 with its 16 octets (RFC 1928 section 5; the RFC 4291 section 2.5.5.2 layout,
 * 0:0:0:0:0:ffff:0102:0304), never turned into ATYP 1: the server gets the address the client named. A %zone is
 * not sent (there is no room for one, and it names an interface of this host). Anything else is a name, ATYP 3,
 * so DNS happens at the far end; one longer than SOCKS5's 255 bytes throws a DialError.
 */
export function encodeSocksConnect(target: Target): Buffer {
  const { host, port } = target;
  const family = ipFamily(host);
  if (family === 0 && host.length > 255) throw new DialError('error', `host name too long for SOCKS5: ${host.slice(0, 40)}…`);
  const out = Buffer.allocUnsafe(4 + (family === 4 ? 4 : family === 6 ? 16 : 1 + host.length) + 2);
  out[0] = SOCKS_VERSION;
  out[1] = SocksCommand.Connect;
  out[2] = 0x00;
  if (family === 4) {
    out[3] = SocksAddressType.IPv4;
    writeIPv4(host, out, 4);
  } else if (family === 6) {
    out[3] = SocksAddressType.IPv6;
    writeIPv6(host, out, 4);
  } else {
    out[3] = SocksAddressType.Domain;
    out[4] = host.length;
    out.write(host, 5, 'latin1');
  }
  out.writeUInt16BE(port, out.length - 2);
  return out;
}

export type SocksReplyParse = { kind: 'need-more' } | { kind: 'reply'; code: number; length: number } | { kind: 'invalid'; message: string };

/** Parses a SOCKS5 reply (VER REP RSV ATYP BND.ADDR BND.PORT), so that bytes after it are not mistaken for it. */
export function parseSocksReply(b: Buffer): SocksReplyParse {
  if (b.length < 1) return { kind: 'need-more' };
  if (b[0] !== SOCKS_VERSION) return { kind: 'invalid', message: 'reply is not SOCKS5' };
  if (b.length < 5) return { kind: 'need-more' };
  const code = b[1]!;
  let length: number;
  switch (b[3]) {
    case SocksAddressType.IPv4:
      length = 4 + 4 + 2;
      break;
    case SocksAddressType.IPv6:
      length = 4 + 16 + 2;
      break;
    case SocksAddressType.Domain:
      length = 4 + 1 + b[4]! + 2;
      break;
    default:
      // A failure reply with a nonsense address still carries a usable code.
      if (code !== SocksReply.Succeeded) return { kind: 'reply', code, length: b.length };
      return { kind: 'invalid', message: `reply has unknown address type ${hex(b[3]!)}` };
  }
  if (b.length < length) return { kind: 'need-more' };
  return { kind: 'reply', code, length };
}

/** How to read one kind of SOCKS5 server we dial through; the bytes are the same for all. */
export interface Socks5Peer {
  /** Send the CONNECT right behind the greeting (no round trip), for a server known to read them in order. */
  readonly pipelined: boolean;
  /** What reply 0x01 (general failure) means from this server. */
  readonly generalFailure: FailureReason;
  /** What it means when the server closes after accepting the method but before its CONNECT reply. */
  readonly closedBeforeReply: FailureReason;
}

/** A device's own SOCKS5 proxy: any implementation, read as RFC 1928 says. */
export const SOCKS5_DEVICE: Socks5Peer = { pipelined: false, generalFailure: 'error', closedBeforeReply: 'protocol' };

/** Client side of one CONNECT: greeting (no authentication), method reply, request, reply. */
export class Socks5ConnectHandshake implements HandshakeMachine {
  readonly hello: Buffer;
  /** The CONNECT request, when it is not part of the hello. Encoded up front, so a bad target throws here. */
  private readonly request: Buffer | null;
  private methodAccepted = false;

  constructor(
    target: Target,
    private readonly peer: Socks5Peer = SOCKS5_DEVICE,
  ) {
    const request = encodeSocksConnect(target);
    this.hello = peer.pipelined ? Buffer.concat([GREETING_NO_AUTH, request]) : GREETING_NO_AUTH;
    this.request = peer.pipelined ? null : request;
  }

  feed(received: Buffer): HandshakeStep {
    if (!this.methodAccepted) {
      if (received.length < 2) return NEED_MORE;
      if (received[0] !== SOCKS_VERSION) return { kind: 'fail', reason: 'protocol', message: 'greeting reply is not SOCKS5' };
      if (received[1] !== SocksMethod.NoAuth) return { kind: 'fail', reason: 'not-allowed', message: `proxy wants authentication (method ${hex(received[1]!)})` };
      this.methodAccepted = true;
      return { kind: 'continue', consumed: 2, send: this.request };
    }
    const r = parseSocksReply(received);
    if (r.kind === 'need-more') return NEED_MORE;
    if (r.kind === 'invalid') return { kind: 'fail', reason: 'protocol', message: r.message };
    if (r.code !== SocksReply.Succeeded) {
      return { kind: 'fail', reason: reasonFromSocksReply(r.code, this.peer.generalFailure), message: `CONNECT failed with SOCKS5 reply ${r.code}` };
    }
    return { kind: 'done', consumed: r.length };
  }

  closed(): HandshakeFailure {
    if (this.methodAccepted) return { reason: this.peer.closedBeforeReply, message: 'closed before replying to the CONNECT' };
    return { reason: 'protocol', message: 'closed before answering the greeting' };
  }
}
