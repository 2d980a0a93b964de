// HTTP/1 as pure code, no I/O: what the HTTP proxy listener needs beyond Node's parser (credentials, request
// targets, header filtering), and the client side of CONNECT towards a device's HTTP proxy.
import type { FailureReason } from '../core/failure.js';
import { ipFamily } from '../core/ip.js';
import { isValidTargetHost, type Target } from '../core/target.js';
import type { HandshakeFailure, HandshakeMachine, HandshakeStep } from './handshake.js';

export interface Credentials {
  username: Buffer;
  password: Buffer;
}

/** `Proxy-Authorization: Basic base64(user:pass)`; null when absent or not Basic. */
export function parseBasicCredentials(header: string | undefined): Credentials | null {
  if (header === undefined) return null;
  const m = /^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (m === null) return null;
  const raw = Buffer.from(m[1]!, 'base64');
  const colon = raw.indexOf(0x3a);
  if (colon < 0) return null;
  return { username: raw.subarray(0, colon), password: raw.subarray(colon + 1) };
}

/** Parses `host:port`, `[v6]:port`; the port is mandatory (CONNECT authority-form). */
export function parseAuthority(authority: string, defaultPort?: number): Target | null {
  let host: string;
  let portText: string | undefined;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) return null;
    host = authority.slice(1, close);
    if (ipFamily(host) !== 6) return null;
    const after = authority.slice(close + 1);
    if (after === '') portText = undefined;
    else if (after.startsWith(':')) portText = after.slice(1);
    else return null;
  } else {
    const colon = authority.lastIndexOf(':');
    if (colon < 0) {
      host = authority;
      portText = undefined;
    } else {
      host = authority.slice(0, colon);
      portText = authority.slice(colon + 1);
    }
    // A bare IPv6 literal without brackets is ambiguous; refuse it.
    if (host.includes(':') || !isValidTargetHost(host)) return null;
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) return null;
    port = defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) return null;
    port = Number(portText);
  }
  if (port < 1 || port > 65535) return null;
  return { host, port };
}

/** Authority text for a request line or Host header: IPv6 literals get their brackets back. */
export function formatAuthority(target: Target): string {
  return ipFamily(target.host) === 6 ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
}

export interface AbsoluteTarget {
  target: Target;
  /** Path and query, origin-form (what an origin server expects on the request line). */
  path: string;
  /** The URL's authority as the client wrote it, for a Host header when the client sent none. */
  authority: string;
}

/** `http://host[:port]/path?query` -> target + origin-form path; null if the URL is not usable. */
export function parseAbsoluteHttpUrl(url: string): AbsoluteTarget | null {
  if (url.length < 8 || url.slice(0, 7).toLowerCase() !== 'http://') return null;
  let end = url.length;
  for (let i = 7; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c === 0x2f /* / */ || c === 0x3f /* ? */ || c === 0x23 /* # */) {
      end = i;
      break;
    }
  }
  const authority = url.slice(7, end);
  // Credentials in a request URL are not HTTP; refusing them keeps them out of the device's logs.
  if (authority.includes('@')) return null;
  const target = parseAuthority(authority, 80);
  if (target === null) return null;
  let path = url.slice(end);
  const hash = path.indexOf('#');
  if (hash >= 0) path = path.slice(0, hash);
  if (path === '') path = '/';
  else if (path.startsWith('?')) path = `/${path}`;
  return { target, path, authority };
}

// RFC 9110 7.6.1 plus the de-facto ones (Proxy-Connection, Keep-Alive). Proxy-Authorization carries the
// customer's key and must never reach the device or the target.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Copies raw headers (as in IncomingMessage.rawHeaders) without hop-by-hop ones, including any named
 * in a Connection header. `drop` names extra lower-case headers the caller handles itself.
 */
export function endToEndHeaders(raw: readonly string[], drop?: ReadonlySet<string>): string[] {
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name === 'connection' || name === 'proxy-connection') {
      for (const token of raw[i + 1]!.split(',')) {
        const t = token.trim().toLowerCase();
        if (t !== '') (listed ??= new Set()).add(t);
      }
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || listed?.has(name) || drop?.has(name)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** Why a request head is refused before anything of it is forwarded: the status and one line for the client. */
export interface HeadProblem {
  readonly status: 400 | 501;
  /** The X-Tailgate-Error label. */
  readonly tag: 'bad-request' | 'transfer-coding';
  readonly text: string;
}

function problem(status: 400 | 501, text: string): HeadProblem {
  return Object.freeze({ status, tag: status === 501 ? 'transfer-coding' : 'bad-request', text });
}

// Fixed answers, so a refusal allocates nothing and never repeats what the client sent.
export const HEAD_PROBLEMS = {
  contentLengthWithChunked: problem(400, 'Content-Length together with Transfer-Encoding'),
  contentLengthRepeated: problem(400, 'Content-Length repeated'),
  contentLengthInvalid: problem(400, 'Content-Length is not a decimal number'),
  transferCoding: problem(501, 'Transfer-Encoding other than chunked is not supported'),
  hostRepeated: problem(400, 'Host repeated'),
  hostMissing: problem(400, 'HTTP/1.1 request without a Host header'),
  controlCharacter: problem(400, 'control character (CR, LF, NUL or other) in a header'),
} as const;

/** A header name or value byte that may not be forwarded: controls other than HTAB, and DEL (RFC 9110 5.5). */
function hasControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}

/**
 * The framing and header rules a forwarded request must meet, on top of what Node's parser (llhttp) enforces, so
 * that the device and the origin read the same message boundaries we did (RFC 9112 6.1, 6.3; RFC 9110 5.5): exactly
 * one way of framing a body, `chunked` as the only transfer coding (we re-chunk bodies, so any other coding would be
 * dropped), one Content-Length, one Host, no control characters anywhere. llhttp refuses most of these itself; this
 * check does not depend on which ones or on its lenient flags. `raw` as in IncomingMessage.rawHeaders.
 */
export function requestHeadProblem(raw: readonly string[], httpVersion: string): HeadProblem | null {
  let contentLength = 0;
  let transferEncoding = 0;
  let host = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.length === 0 || hasControl(name) || hasControl(value)) return HEAD_PROBLEMS.controlCharacter;
    // Cheap length gate before the case-insensitive compares: the three names are 4, 14 and 17 characters long.
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host') host++;
        break;
      case 14:
        if (name.toLowerCase() === 'content-length') {
          if (++contentLength > 1) return HEAD_PROBLEMS.contentLengthRepeated;
          if (!/^[0-9]{1,15}$/.test(value.trim())) return HEAD_PROBLEMS.contentLengthInvalid;
        }
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') {
          // One header, one coding: `chunked, chunked`, `gzip, chunked` or a second header are not ours to reinterpret.
          if (++transferEncoding > 1 || value.trim().toLowerCase() !== 'chunked') return HEAD_PROBLEMS.transferCoding;
        }
        break;
    }
  }
  if (contentLength > 0 && transferEncoding > 0) return HEAD_PROBLEMS.contentLengthWithChunked;
  if (host > 1) return HEAD_PROBLEMS.hostRepeated;
  if (host === 0 && httpVersion === '1.1') return HEAD_PROBLEMS.hostMissing;
  return null;
}

// ---- server side: a CONNECT request head read without Node's parser ------------------------------------

/** A CONNECT request head in the plain form every client sends, which the listener answers without Node's parser. */
export interface ConnectHead {
  readonly kind: 'connect';
  /** The request target as sent (authority-form), for parseAuthority. */
  readonly authority: string;
  /** The first Proxy-Authorization value, spaces around it trimmed as Node does; undefined without one. Node keeps the first of repeats too. */
  readonly authorization: string | undefined;
  /** Bytes up to and including the blank line; what follows is the client's first bytes for the target. */
  readonly headLength: number;
}

/**
 * `need-more`: what has arrived is the start of such a head. `other`: anything else, for Node's parser to take
 * (and refuse as it does) with every byte: another method, a head at or over `maxBytes`, a byte outside the plain
 * form, a body header.
 */
export type ConnectHeadScan = { readonly kind: 'need-more' } | { readonly kind: 'other' } | ConnectHead;

const SCAN_NEED_MORE: ConnectHeadScan = Object.freeze({ kind: 'need-more' });
const SCAN_OTHER: ConnectHeadScan = Object.freeze({ kind: 'other' });

const AUTHORITY_BYTE = 1;
const TOKEN_BYTE = 2;
const VALUE_BYTE = 4;
/**
 * The plain form: a target of letters, digits and `.-_~:[]`, header names of token characters (RFC 9110 5.6.2),
 * values of HTAB and visible ASCII. A subset of what llhttp accepts in strict mode, so a head that passes here would
 * have passed there with the same target and credentials.
 */
const BYTE_CLASS = (() => {
  const t = new Uint8Array(256);
  const mark = (chars: string, bit: number) => {
    for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)]! |= bit;
  };
  const alnum = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  mark(`${alnum}.-_~:[]`, AUTHORITY_BYTE);
  mark(`${alnum}!#$%&'*+-.^_\`|~`, TOKEN_BYTE);
  t[0x09]! |= VALUE_BYTE;
  for (let c = 0x20; c <= 0x7e; c++) t[c]! |= VALUE_BYTE;
  return t;
})();

const CONNECT_METHOD = Buffer.from('CONNECT ', 'latin1');
const VERSION_PREFIX = Buffer.from(' HTTP/1.', 'latin1');

/** Whether the header name at `start` is `lower` (lower-case letters and `-`), in any case. */
function nameIs(buf: Buffer, start: number, lower: string): boolean {
  for (let j = 0; j < lower.length; j++) if ((buf[start + j]! | 0x20) !== lower.charCodeAt(j)) return false;
  return true;
}

/**
 * Reads `buf`, the bytes a client has sent so far, as a CONNECT request head in the plain form. Decisions depend only
 * on the bytes, never on how they were chunked: a prefix of a plain head is `need-more`, and a head turns `other`
 * at its first byte outside the form.
 */
export function scanConnectHead(buf: Buffer, maxBytes: number): ConnectHeadScan {
  const n = buf.length;
  const more = n >= maxBytes ? SCAN_OTHER : SCAN_NEED_MORE;
  for (let i = 0; i < CONNECT_METHOD.length; i++) {
    if (i >= n) return more;
    if (buf[i] !== CONNECT_METHOD[i]) return SCAN_OTHER;
  }
  let i = CONNECT_METHOD.length;
  while (i < n && (BYTE_CLASS[buf[i]!]! & AUTHORITY_BYTE) !== 0) i++;
  const authorityEnd = i;
  if (i === CONNECT_METHOD.length && i < n) return SCAN_OTHER;
  // " HTTP/1.0" or " HTTP/1.1", then CRLF.
  for (let k = 0; k < VERSION_PREFIX.length; k++, i++) {
    if (i >= n) return more;
    if (buf[i] !== VERSION_PREFIX[k]) return SCAN_OTHER;
  }
  if (i >= n) return more;
  if (buf[i] !== 0x30 && buf[i] !== 0x31) return SCAN_OTHER;
  i++;
  let authorization: string | undefined;
  for (;;) {
    // Here: the CRLF that ends the previous line.
    if (i >= n) return more;
    if (buf[i] !== 0x0d) return SCAN_OTHER;
    if (i + 1 >= n) return more;
    if (buf[i + 1] !== 0x0a) return SCAN_OTHER;
    i += 2;
    if (i >= n) return more;
    if (buf[i] === 0x0d) {
      if (i + 1 >= n) return more;
      if (buf[i + 1] !== 0x0a) return SCAN_OTHER;
      const headLength = i + 2;
      if (headLength >= maxBytes) return SCAN_OTHER;
      return { kind: 'connect', authority: buf.toString('latin1', CONNECT_METHOD.length, authorityEnd), authorization, headLength };
    }
    const nameStart = i;
    while (i < n && (BYTE_CLASS[buf[i]!]! & TOKEN_BYTE) !== 0) i++;
    if (i >= n) return more;
    // An empty name, a space before the colon, or a folded line (obs-fold) are llhttp's to refuse.
    if (i === nameStart || buf[i] !== 0x3a) return SCAN_OTHER;
    const nameLength = i - nameStart;
    const valueStart = ++i;
    while (i < n && (BYTE_CLASS[buf[i]!]! & VALUE_BYTE) !== 0) i++;
    // A body header on a CONNECT has rules of its own in llhttp; the plain form has none.
    if (nameLength === 14 && nameIs(buf, nameStart, 'content-length')) return SCAN_OTHER;
    if (nameLength === 17 && nameIs(buf, nameStart, 'transfer-encoding')) return SCAN_OTHER;
    if (nameLength === 19 && authorization === undefined && i < n && nameIs(buf, nameStart, 'proxy-authorization')) authorization = buf.toString('latin1', valueStart, i).trim();
  }
}

// ---- client side: CONNECT towards a device's HTTP proxy ------------------------------------------------

/** The CONNECT request for `target`. */
export function encodeConnectRequest(target: Target): Buffer {
  const authority = formatAuthority(target);
  return Buffer.from(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, 'latin1');
}

export type ResponseHead =
  | { kind: 'need-more' }
  | { kind: 'reply'; status: number; /** bytes up to and including the blank line */ headLength: number }
  | { kind: 'invalid'; message: string };

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: |\r|$)/;

/** Parses the head of an HTTP/1 response up to its blank line: the status, and where the head ends. */
export function parseResponseHead(buf: Buffer): ResponseHead {
  const end = buf.indexOf('\r\n\r\n', 0, 'latin1');
  if (end < 0) {
    // Fail early on something that is not HTTP at all instead of waiting for the deadline.
    if (buf.length >= 5 && buf.toString('latin1', 0, 5) !== 'HTTP/') return { kind: 'invalid', message: 'reply is not HTTP' };
    return { kind: 'need-more' };
  }
  const lineEnd = buf.indexOf('\r\n', 0, 'latin1');
  const m = STATUS_LINE.exec(buf.toString('latin1', 0, lineEnd));
  if (m === null) return { kind: 'invalid', message: 'reply has no HTTP status line' };
  return { kind: 'reply', status: Number(m[1]), headLength: end + 4 };
}

/** What a device proxy's refusal of our CONNECT means for our client. */
export function reasonFromConnectStatus(status: number): FailureReason {
  switch (status) {
    case 401:
    case 403:
    case 407:
      return 'not-allowed';
    case 404: // proxy (npm) and others: name did not resolve
    case 502:
    case 503: // squid: ERR_CONNECT_FAIL, ERR_DNS_FAIL
      return 'unreachable';
    case 504:
      return 'timeout';
    default:
      return 'error';
  }
}

const CLOSED_EARLY: HandshakeFailure = Object.freeze({ reason: 'protocol', message: 'device closed the connection during the handshake' });

/** Client side of one CONNECT: the request, then the reply head; only its status matters, headers are skipped. */
export class HttpConnectHandshake implements HandshakeMachine {
  readonly hello: Buffer;

  constructor(target: Target) {
    this.hello = encodeConnectRequest(target);
  }

  feed(received: Buffer): HandshakeStep {
    const r = parseResponseHead(received);
    if (r.kind === 'need-more') return r;
    if (r.kind === 'invalid') return { kind: 'fail', reason: 'protocol', message: r.message };
    if (r.status >= 200 && r.status < 300) return { kind: 'done', consumed: r.headLength };
    return { kind: 'fail', reason: reasonFromConnectStatus(r.status), message: `device proxy answered ${r.status}` };
  }

  closed(): HandshakeFailure {
    return CLOSED_EARLY;
  }
}
