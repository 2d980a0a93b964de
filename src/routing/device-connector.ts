// Opens the onward connection for a tunnel: dial the device's proxy through the Dialer, then ask it for
// the client's target. Everything fails with a DialError whose reason both listeners know how to report.
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { DialError, type Dialer } from '../tailnet/dialer.js';
import type { TailnetView } from '../tailnet/types.js';
import type { DeviceRoute, Target } from './types.js';
import { park, runHandshake } from './upstream-handshake.js';
import { HttpConnectHandshake } from './upstream-http.js';
import { Socks5ConnectHandshake } from './upstream-socks5.js';

function asDialError(err: unknown): DialError {
  if (err instanceof DialError) return err;
  return new DialError('error', err instanceof Error ? err.message : String(err));
}

export class DeviceConnector {
  constructor(
    private readonly dialer: Dialer,
    readonly connectTimeoutMs: number,
    private readonly tailnet?: TailnetView,
  ) {}

  /**
   * A raw connection to the device's proxy (for forwarding absolute-form HTTP requests to an HTTP device).
   * `timeoutMs` defaults to the connect timeout.
   */
  async openDevice(route: DeviceRoute, timeoutMs = this.connectTimeoutMs): Promise<Socket> {
    const why = this.dialer.unavailableReason();
    if (why !== null) throw new DialError('network-down', `tailnet unavailable: ${why}`);
    if (this.tailnet?.peerOnline(route.ip) === false) throw new DialError('offline', `device ${route.ip} is offline`);
    let socket: Socket;
    try {
      socket = await this.dialer.dial(route.ip, route.port, timeoutMs);
    } catch (err) {
      throw asDialError(err);
    }
    park(socket);
    if (socket.destroyed) throw new DialError('error', `${route.ip}:${route.port}: connection closed right after connecting`);
    return socket;
  }

  /**
   * A connection to `target` through the device: dial plus the device-side CONNECT, all within the
   * connect timeout. Resolves with the socket paused, any early bytes from the target unshifted, and an
   * error listener parked on it; rejects with DialError only.
   */
  async open(route: DeviceRoute, target: Target): Promise<Socket> {
    const deadline = performance.now() + this.connectTimeoutMs;
    const socket = await this.openDevice(route);
    const left = Math.ceil(deadline - performance.now());
    if (left <= 0) {
      socket.destroy();
      throw new DialError('timeout', `${route.ip}:${route.port}: connect timeout used up by the dial`);
    }
    const machine = route.protocol === 'socks5' ? new Socks5ConnectHandshake(target) : new HttpConnectHandshake(target);
    return runHandshake(socket, machine, left, `${route.protocol} device ${route.ip}:${route.port}`);
  }
}
