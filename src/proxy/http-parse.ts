// Pure helpers for the HTTP proxy: credentials, request targets and header filtering. No I/O.
import { isIP } from 'node:net';
import type { Target } from '../routing/types.js';
import { isValidTargetHost } from './socks5-parser.js';

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
    if (isIP(host) !== 6) return null;
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
  return isIP(target.host) === 6 ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
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

/** True if the header list contains `name` (lower-case). */
export function hasHeader(raw: readonly string[], name: string): boolean {
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) return true;
  return false;
}
