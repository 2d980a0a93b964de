// Opens the onward connection for a tunnel: dial the device's proxy through the Dialer, then ask it for
// the client's target. Everything fails with a DialError whose reason both listeners know how to report.
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Dialer } from '../core/dialer.js';
import { DialError } from '../core/failure.js';
import type { DeviceRoute } from '../core/route.js';
import type { Target } from '../core/target.js';
import { park, runHandshake } from '../protocol/handshake.js';
import { HttpConnectHandshake } from '../protocol/http.js';
import { Socks5ConnectHandshake } from '../protocol/socks5.js';
import type { PeerCheck, TailnetView } from '../tailnet/types.js';

function asDialError(err: unknown): DialError {
  if (err instanceof DialError) return err;
  return new DialError('error', err instanceof Error ? err.message : String(err));
}

/** Longest wait for a fresh tailscaled status before the snapshot's "offline" stands. */
const RECHECK_MS = 1_000;
/**
 * Dial budget for a device control reports offline while we still hold a live WireGuard session with it: a live
 * device answers within a round trip, and a dead one still fails well inside the connect timeout.
 */
export const OFFLINE_PROBE_MS = 2_000;

function offlineError(ip: string, check: PeerCheck | undefined, detail = ''): DialError {
  const seen = check?.lastSeen === undefined ? '' : ` (last seen by control at ${check.lastSeen})`;
  return new DialError('offline', `device ${ip} is offline${seen}${detail}`);
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
    const sync = this.tailnet?.controlSync?.(timeoutMs);
    if (sync) timeoutMs = await this.afterControlSync(sync, route.ip, timeoutMs);
    let probe: PeerCheck | undefined;
    if (this.tailnet?.peerOnline(route.ip) === false) ({ timeoutMs, probe } = await this.recheckOffline(this.tailnet, route.ip, timeoutMs));
    let socket: Socket;
    try {
      socket = await this.dialer.dial(route.ip, route.port, timeoutMs);
    } catch (err) {
      if (probe !== undefined && err instanceof DialError && err.reason === 'timeout') {
        throw offlineError(route.ip, probe, ` and it did not answer within ${timeoutMs} ms`);
      }
      throw asDialError(err);
    }
    park(socket);
    if (socket.destroyed) throw new DialError('error', `${route.ip}:${route.port}: connection closed right after connecting`);
    return socket;
  }

  /** Waits out a restarted tailscaled's first netmap from control; resolves with what is left of the dial budget. */
  private async afterControlSync(sync: Promise<void>, ip: string, timeoutMs: number): Promise<number> {
    const started = performance.now();
    await sync;
    const left = timeoutMs - Math.ceil(performance.now() - started);
    if (left <= 0) throw new DialError('timeout', `${ip}: connect timeout used up waiting for tailscaled's netmap from control after its start`);
    return left;
  }

  /**
   * The status snapshot said offline. It can be a poll interval old (a device approved a moment ago is offline in it),
   * and control's flag only tells whether the device keeps its control connection, not whether it can be reached.
   * So refuse at once only if a fresh read still says offline and we hold no live WireGuard session with the device;
   * with a live session, dial it within OFFLINE_PROBE_MS. Resolves with the dial budget; rejects with DialError.
   */
  private async recheckOffline(view: TailnetView, ip: string, timeoutMs: number): Promise<{ timeoutMs: number; probe: PeerCheck | undefined }> {
    const started = performance.now();
    let check: PeerCheck | undefined;
    try {
      check = await view.checkPeer?.(ip, Math.min(RECHECK_MS, timeoutMs));
    } catch {
      // tailscaled did not answer in time.
    }
    // Without a fresh read (tailscaled silent, or a view that cannot read one) the snapshot's verdict stands.
    if (check === undefined || (check.online === false && !check.liveSession)) throw offlineError(ip, check);
    const left = timeoutMs - Math.ceil(performance.now() - started);
    if (left <= 0) throw new DialError('timeout', `${ip}: connect timeout used up while checking whether the device is online`);
    return check.online === false ? { timeoutMs: Math.min(left, OFFLINE_PROBE_MS), probe: check } : { timeoutMs: left, probe: undefined };
  }

  /**
   * A connection to `target` through the device: dial plus the device-side CONNECT, all within the
   * connect timeout. Resolves with the socket not flowing yet (the relay or the HTTP client starts it), any early
   * bytes from the target unshifted, and an error listener parked on it; rejects with DialError only.
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
