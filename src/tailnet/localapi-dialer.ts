// Dials devices through tailscaled's LocalAPI: POST /localapi/v0/dial upgraded to `ts-dial` on the unix socket,
// after which the socket carries the device connection's bytes.
import type net from 'node:net';
import type { Dialer } from '../core/dialer.js';
import { DialError } from '../core/failure.js';
import { formatAuthority } from '../protocol/http.js';
import { TsDialHandshake } from '../protocol/localapi.js';
import { dialViaTailscaled } from './tailscaled-dial.js';

export class LocalApiDialer implements Dialer {
  private readonly endpoint: net.NetConnectOpts;

  constructor(socketPath: string) {
    this.endpoint = { path: socketPath };
  }

  async dial(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
    const what = `tailscaled LocalAPI, dialing ${formatAuthority({ host, port })}`;
    return dialViaTailscaled(this.endpoint, new TsDialHandshake(host, port), what, timeoutMs);
  }
}
