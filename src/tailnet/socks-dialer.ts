// Dials devices through tailscaled's own SOCKS5 server (--socks5-server=127.0.0.1:PORT, no auth).
import type net from 'node:net';
import type { Dialer } from '../core/dialer.js';
import { DialError } from '../core/failure.js';
import { formatAuthority } from '../protocol/http.js';
import { Socks5ConnectHandshake, type Socks5Peer } from '../protocol/socks5.js';
import { dialViaTailscaled } from './tailscaled-dial.js';

/**
 * tailscaled's net/socks5 server reads the greeting and the CONNECT in order, so both go out in one write. It
 * answers every failed dial with 0x01 (general failure) after its own 5-second dial timeout, so 0x01, like a close
 * before the reply, is read as "device not reachable"; other codes as RFC 1928 defines them, in case a different
 * SOCKS5 server sits there.
 */
const TAILSCALED_SOCKS5: Socks5Peer = { pipelined: true, generalFailure: 'unreachable', closedBeforeReply: 'unreachable' };

/** tailscaled's SOCKS5 port: the supervisor knows it (the port is picked when it starts). */
export interface SocksEndpoint {
  readonly socksPort: number;
}

export class TailscaledSocksDialer implements Dialer {
  constructor(private readonly tailscaled: SocksEndpoint) {}

  async dial(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
    const target = { host, port };
    const endpoint = { host: '127.0.0.1', port: this.tailscaled.socksPort };
    return dialViaTailscaled(endpoint, new Socks5ConnectHandshake(target, TAILSCALED_SOCKS5), `tailscaled SOCKS5, dialing ${formatAuthority(target)}`, timeoutMs);
  }
}
