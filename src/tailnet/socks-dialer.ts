// Dials devices through tailscaled's own SOCKS5 server (--socks5-server=127.0.0.1:PORT, no auth).
import net from 'node:net';
import { DialError, type Dialer } from './dialer.js';
import { handshake, type HandshakeParser } from './handshake.js';
import type { Availability } from './gated-dialer.js';

/** Greeting (no-auth only) and CONNECT in one write: tailscaled reads them in order, so no round-trip is spent. */
export function socksHello(host: string, port: number): Buffer {
  const greeting = [0x05, 0x01, 0x00];
  let addr: Buffer;
  const family = net.isIP(host);
  if (family === 4) {
    addr = Buffer.from([0x01, ...host.split('.').map(Number)]);
  } else if (family === 6) {
    addr = Buffer.concat([Buffer.from([0x04]), ipv6Bytes(host)]);
  } else {
    const name = Buffer.from(host, 'utf8');
    if (name.length > 255) throw new DialError('error', `host name too long: ${host.slice(0, 40)}…`);
    addr = Buffer.concat([Buffer.from([0x03, name.length]), name]);
  }
  return Buffer.concat([Buffer.from(greeting), Buffer.from([0x05, 0x01, 0x00]), addr, Buffer.from([port >> 8, port & 0xff])]);
}

function ipv6Bytes(ip: string): Buffer {
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/**
 * Reply codes as tailscaled's net/socks5 sends them: every dial failure is 0x01 (general failure) after its own
 * 5-second dial timeout, so 0x01 is read as "device not reachable"; the others are mapped as RFC 1928 defines them
 * in case a different SOCKS5 server sits there.
 */
function socksReplyParser(target: string): HandshakeParser {
  return (buf, ended) => {
    if (buf.length < 2) {
      if (ended) throw new DialError('protocol', `tailscaled SOCKS5 closed before answering for ${target}`);
      return null;
    }
    if (buf[0] !== 0x05 || buf[1] !== 0x00) throw new DialError('protocol', `tailscaled SOCKS5 refused the no-auth method (${buf[1]})`);
    if (buf.length < 7) {
      if (ended) throw new DialError('unreachable', `tailscaled could not connect to ${target}`);
      return null;
    }
    const rep = buf[3]!;
    if (rep !== 0x00) throw new DialError(reasonForReply(rep), `tailscaled could not connect to ${target} (SOCKS5 reply ${rep})`);
    const atyp = buf[5]!;
    const addrLen = atyp === 0x01 ? 4 : atyp === 0x04 ? 16 : atyp === 0x03 ? 1 + buf[6]! : -1;
    if (addrLen < 0) throw new DialError('protocol', `tailscaled SOCKS5 sent address type ${atyp}`);
    const total = 2 + 4 + addrLen + 2;
    return buf.length >= total ? total : null;
  };
}

function reasonForReply(rep: number) {
  switch (rep) {
    case 0x02:
      return 'not-allowed' as const;
    case 0x05:
      return 'refused' as const;
    case 0x06:
      return 'timeout' as const;
    default:
      return 'unreachable' as const;
  }
}

/** tailscaled's SOCKS5 port and its availability; the supervisor is both (the port is picked when it starts). */
export interface SocksEndpoint extends Availability {
  readonly socksPort: number;
}

export class TailscaledSocksDialer implements Dialer {
  constructor(private readonly tailscaled: SocksEndpoint) {}

  unavailableReason(): string | null {
    return this.tailscaled.unavailableReason();
  }

  async dial(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
    const down = this.tailscaled.unavailableReason();
    if (down !== null) throw new DialError('network-down', down);
    const target = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
    const endpoint = { host: '127.0.0.1', port: this.tailscaled.socksPort };
    return handshake({ endpoint, target, via: 'tailscaled SOCKS5' }, socksHello(host, port), socksReplyParser(target), timeoutMs);
  }
}
