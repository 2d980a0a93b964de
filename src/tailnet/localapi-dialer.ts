// Dials devices through tailscaled's LocalAPI: POST /localapi/v0/dial upgraded to `ts-dial` on the unix socket,
// after which the socket carries the device connection's bytes.
import net from 'node:net';
import { DialError, type FailureReason, type Dialer } from './dialer.js';
import { handshake, type HandshakeParser } from './handshake.js';
import { LOCALAPI_HOST } from './localapi.js';
import type { Availability } from './gated-dialer.js';

const HEADER_END = Buffer.from('\r\n\r\n');

function dialRequest(host: string, port: number): Buffer {
  return Buffer.from(
    `POST /localapi/v0/dial HTTP/1.1\r\nHost: ${LOCALAPI_HOST}\r\nConnection: upgrade\r\nUpgrade: ts-dial\r\n` +
      `Dial-Host: ${host}\r\nDial-Port: ${port}\r\nDial-Network: tcp\r\nContent-Length: 0\r\n\r\n`,
    'latin1',
  );
}

/** tailscaled answers a failed dial with 502 and Go's error text; the text is all there is to tell causes apart. */
export function reasonFromDialFailure(text: string): FailureReason {
  const t = text.toLowerCase();
  if (t.includes('refused')) return 'refused';
  if (t.includes('timeout') || t.includes('timed out') || t.includes('deadline exceeded')) return 'timeout';
  if (t.includes('no route') || t.includes('unreachable') || t.includes('no such host') || t.includes('resolve failure')) return 'unreachable';
  // Anything else is not known to mean "no route": say so plainly rather than guess (the log line has the text).
  return 'error';
}

function upgradeParser(target: string): HandshakeParser {
  return (buf, ended) => {
    const end = buf.indexOf(HEADER_END);
    if (end < 0) {
      if (ended) throw new DialError('protocol', `tailscaled LocalAPI closed mid-reply while dialing ${target}`);
      return null;
    }
    const head = buf.toString('latin1', 0, end);
    const status = Number(head.slice(9, 12));
    if (status === 101) return end + 4;

    const lengthMatch = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    const bodyLength = lengthMatch ? Number(lengthMatch[1]) : -1;
    const body = buf.subarray(end + 4);
    if (!ended && (bodyLength < 0 || body.length < bodyLength)) return null;
    const text = body.toString('utf8', 0, bodyLength < 0 ? body.length : bodyLength).trim();

    // 200 + Dial-Self means "not a tailnet address, dial it yourself": a binding that points outside the tailnet.
    if (status === 200 && /\r\ndial-self:\s*true/i.test(head)) {
      throw new DialError('unreachable', `${target} is not a tailnet address`);
    }
    if (status === 502) throw new DialError(reasonFromDialFailure(text), `tailscaled could not connect to ${target}: ${text.slice(0, 160)}`);
    throw new DialError('error', `tailscaled LocalAPI answered HTTP ${status} while dialing ${target}: ${text.slice(0, 160)}`);
  };
}

export class LocalApiDialer implements Dialer {
  private readonly endpoint: net.NetConnectOpts;

  constructor(
    socketPath: string,
    private readonly gate: Availability,
  ) {
    this.endpoint = { path: socketPath };
  }

  unavailableReason(): string | null {
    return this.gate.unavailableReason();
  }

  async dial(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
    const down = this.gate.unavailableReason();
    if (down !== null) throw new DialError('network-down', down);
    if (!/^[A-Za-z0-9.:-]+$/.test(host)) throw new DialError('error', 'device host contains characters that cannot go in a header');
    const target = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
    return handshake({ endpoint: this.endpoint, target, via: 'tailscaled LocalAPI' }, dialRequest(host, port), upgradeParser(target), timeoutMs);
  }
}
