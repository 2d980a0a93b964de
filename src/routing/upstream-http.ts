// HTTP CONNECT towards a device's HTTP proxy, and the pure parser for its reply head.
import type { FailureReason } from '../tailnet/dialer.js';
import type { Target } from './types.js';
import { formatAuthority } from '../proxy/http-parse.js';
import type { HandshakeProgress, UpstreamHandshake } from './upstream-handshake.js';

export type ConnectReply =
  | { kind: 'need-more' }
  | { kind: 'reply'; status: number; /** bytes up to and including the blank line */ headLength: number }
  | { kind: 'invalid'; message: string };

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: |\r|$)/;

/** Parses the head of the device's answer to our CONNECT. Only the status matters; headers are skipped. */
export function parseConnectReply(buf: Buffer): ConnectReply {
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

/** What a device proxy's refusal means for our client. */
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

export class HttpConnectHandshake implements UpstreamHandshake {
  readonly hello: Buffer;

  constructor(target: Target) {
    const authority = formatAuthority(target);
    this.hello = Buffer.from(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, 'latin1');
  }

  feed(received: Buffer): HandshakeProgress {
    const r = parseConnectReply(received);
    if (r.kind === 'need-more') return r;
    if (r.kind === 'invalid') return { kind: 'fail', reason: 'protocol', message: r.message };
    if (r.status >= 200 && r.status < 300) return { kind: 'done', consumed: r.headLength };
    return { kind: 'fail', reason: reasonFromConnectStatus(r.status), message: `device proxy answered ${r.status}` };
  }
}
