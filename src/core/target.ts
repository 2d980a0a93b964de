import { ipFamily } from './ip.js';

/** What the client asked to reach through the device. host is a domain name or an IP literal (no brackets). */
export interface Target {
  host: string;
  port: number;
}

// Names go to the device as they are (HTTP CONNECT request line or SOCKS ATYP 3), so anything that could
// break out of a request line is refused here rather than escaped later.
const HOSTNAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/;

/** A host as it may appear in a Target: an IP literal or a plain DNS name (253 characters, plus a root dot). */
export function isValidTargetHost(host: string): boolean {
  return host.length > 0 && host.length <= 253 + 1 && (HOSTNAME.test(host) || ipFamily(host) !== 0);
}
