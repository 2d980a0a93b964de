// Opens the onward connection for a tunnel, as a chain of layers each wrapping the next, the way undici composes
// dispatchers. In the order a connection passes them:
//   TailnetGate     the tailnet is up (checked once, here, for every dialer), and a restarted tailscaled has its
//                   netmap from control
//   OfflineRecheck  a device the status snapshot calls offline is refused, or dialled on a short budget
//   DeviceHandshake after the dial: ask the device's proxy for the client's target (HTTP CONNECT or SOCKS5)
//   DeviceDial      the dial itself, through the Dialer
// The gate and the offline layer exist only when there is a supervised tailscaled to ask. Everything fails with a
// DialError whose reason each front end knows how to report.
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Dialer } from '../core/dialer.js';
import { asDialError, DialError, type FailureReason } from '../core/failure.js';
import type { DeviceRoute } from '../core/route.js';
import type { Target } from '../core/target.js';
import { park, runHandshake } from '../protocol/handshake.js';
import { HttpConnectHandshake } from '../protocol/http.js';
import { Socks5ConnectHandshake } from '../protocol/socks5.js';
import type { PeerCheck, TailnetView } from '../tailnet/types.js';

/** Longest wait for a fresh tailscaled status before the snapshot's "offline" stands. */
const RECHECK_MS = 1_000;
/**
 * Dial budget for a device control reports offline while we still hold a live WireGuard session with it: a live
 * device answers within a round trip, and a dead one still fails well inside the connect timeout.
 */
export const OFFLINE_PROBE_MS = 2_000;

/** One connection attempt as it passes the layers. */
export interface Attempt {
  readonly route: DeviceRoute;
  /** null: a raw connection to the device's proxy (forwarded plain-HTTP requests to an HTTP device). */
  readonly target: Target | null;
  /** performance.now() by which the whole attempt (dial and device handshake) must be done. */
  readonly deadline: number;
  /** Set by the offline layer: the dial gets at most this long. */
  dialBudgetMs: number;
  /** The TCP connection to the device was made (a later timeout is the device proxy's, not the dial's). */
  dialed: boolean;
}

export interface ConnectLayer {
  connect(attempt: Attempt): Promise<Socket>;
}

function msLeft(attempt: Attempt): number {
  return Math.ceil(attempt.deadline - performance.now());
}

class DeviceDial implements ConnectLayer {
  constructor(private readonly dialer: Dialer) {}

  async connect(attempt: Attempt): Promise<Socket> {
    const { route } = attempt;
    const budget = Math.min(attempt.dialBudgetMs, msLeft(attempt));
    if (budget <= 0) throw new DialError('timeout', `${route.ip}: connect timeout used up before the dial`);
    let socket: Socket;
    try {
      socket = await this.dialer.dial(route.ip, route.port, budget);
    } catch (err) {
      throw asDialError(err);
    }
    attempt.dialed = true;
    park(socket);
    if (socket.destroyed) throw new DialError('error', `${route.ip}:${route.port}: connection closed right after connecting`);
    return socket;
  }
}

class DeviceHandshake implements ConnectLayer {
  constructor(private readonly next: ConnectLayer) {}

  async connect(attempt: Attempt): Promise<Socket> {
    const socket = await this.next.connect(attempt);
    const { route, target } = attempt;
    if (target === null) return socket;
    const left = msLeft(attempt);
    if (left <= 0) {
      socket.destroy();
      throw new DialError('timeout', `${route.ip}:${route.port}: connect timeout used up by the dial`);
    }
    const machine = route.protocol === 'socks5' ? new Socks5ConnectHandshake(target) : new HttpConnectHandshake(target);
    // afterDial: the device was reached, so whatever fails now is behind it, which failover must not count.
    return runHandshake(socket, machine, left, `${route.protocol} device ${route.ip}:${route.port}`, undefined, true);
  }
}

/** Resolves when `promise` settles or after `ms`, whichever is first; never rejects. */
function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    promise.then(done, done);
  });
}

function offlineError(ip: string, check: PeerCheck | undefined, detail = ''): DialError {
  const seen = check?.lastSeen === undefined ? '' : ` (last seen by control at ${check.lastSeen})`;
  return new DialError('offline', `device ${ip} is offline${seen}${detail}`);
}

/**
 * The status snapshot says offline. It can be a poll interval old (a device approved a moment ago is offline in it),
 * and control's flag only tells whether the device keeps its control connection, not whether it can be reached. So
 * refuse at once only if a fresh read still says offline and we hold no live WireGuard session with the device; with
 * a live session, dial it within OFFLINE_PROBE_MS and call a dial that times out "offline".
 */
class OfflineRecheck implements ConnectLayer {
  constructor(
    private readonly view: TailnetView,
    private readonly next: ConnectLayer,
  ) {}

  async connect(attempt: Attempt): Promise<Socket> {
    const ip = attempt.route.ip;
    // A device just bound (here or on another gateway on the same database) is missing or offline in our netmap for a
    // moment, and after tailscaled restarted the first WireGuard handshake with a device can be lost (retried 5 s
    // later, while the dial's TCP SYNs back off to 1, 3, 7 s): its warm-up ends when the path works, so wait for it,
    // within the dial's budget, rather than refuse or dial into the lost handshake.
    const warming = this.view.warming?.(ip);
    if (warming !== undefined) {
      const started = performance.now();
      await settledWithin(warming, Math.min(attempt.dialBudgetMs, msLeft(attempt)));
      attempt.dialBudgetMs -= Math.ceil(performance.now() - started);
    }
    if (this.view.peerOnline(ip) !== false) return this.next.connect(attempt);
    let check: PeerCheck | undefined;
    try {
      check = await this.view.checkPeer?.(ip, Math.min(RECHECK_MS, msLeft(attempt)));
    } catch {
      // tailscaled did not answer in time.
    }
    // Without a fresh read (tailscaled silent, or a view that cannot read one) the snapshot's verdict stands.
    if (check === undefined || (check.online === false && !check.liveSession)) throw offlineError(ip, check);
    if (msLeft(attempt) <= 0) throw new DialError('timeout', `${ip}: connect timeout used up while checking whether the device is online`);
    if (check.online !== false) return this.next.connect(attempt);
    attempt.dialBudgetMs = Math.min(attempt.dialBudgetMs, OFFLINE_PROBE_MS);
    try {
      return await this.next.connect(attempt);
    } catch (err) {
      if (!attempt.dialed && err instanceof DialError && err.reason === 'timeout') throw offlineError(ip, check, ` and it did not answer within ${OFFLINE_PROBE_MS} ms`);
      throw err;
    }
  }
}

/** Fails fast while the tailnet is down, and holds a dial until a restarted tailscaled has control's netmap. */
class TailnetGate implements ConnectLayer {
  constructor(
    private readonly view: TailnetView,
    private readonly next: ConnectLayer,
  ) {}

  async connect(attempt: Attempt): Promise<Socket> {
    const why = this.view.unavailableReason();
    if (why !== null) throw new DialError('network-down', `tailnet unavailable: ${why}`);
    const sync = this.view.controlSync?.(msLeft(attempt));
    if (sync) {
      await sync;
      if (msLeft(attempt) <= 0) throw new DialError('timeout', `${attempt.route.ip}: connect timeout used up waiting for tailscaled's netmap from control after its start`);
    }
    try {
      return await this.next.connect(attempt);
    } catch (err) {
      throw BROKEN_BY_TAILSCALED.has((err as DialError).reason) ? await this.blameTailscaled(err as DialError, attempt) : err;
    }
  }

  /**
   * A connection through tailscaled that broke (reset, or closed mid-answer) may have been broken by tailscaled dying
   * under it, which the supervisor can learn a moment after the socket does: if tailscaled is down, or does not
   * answer a status read now, the tailnet is down, not the device.
   */
  private async blameTailscaled(err: DialError, attempt: Attempt): Promise<DialError> {
    let why = this.view.unavailableReason();
    if (why === null && this.view.answers !== undefined) {
      const answering = await this.view.answers(Math.max(200, Math.min(RECHECK_MS, msLeft(attempt))));
      why = this.view.unavailableReason() ?? (answering ? null : 'tailscaled is not answering');
    }
    return why === null ? err : new DialError('network-down', `tailnet went down during the connection: ${why} (${err.message})`);
  }
}

/** What a connection through tailscaled sees when tailscaled dies under it. */
const BROKEN_BY_TAILSCALED: ReadonlySet<FailureReason> = new Set(['error', 'protocol']);

export class DeviceConnector {
  private readonly chain: ConnectLayer;

  /** `tailnet`: the supervised tailscaled's view; without one (the host is on the tailnet itself) there is nothing to gate on. */
  constructor(
    dialer: Dialer,
    readonly connectTimeoutMs: number,
    tailnet?: TailnetView,
  ) {
    let chain: ConnectLayer = new DeviceHandshake(new DeviceDial(dialer));
    if (tailnet !== undefined) chain = new TailnetGate(tailnet, new OfflineRecheck(tailnet, chain));
    this.chain = chain;
  }

  /**
   * A connection to `target` through the device: dial plus the device-side CONNECT, all within the connect timeout.
   * Resolves with the socket not flowing yet (the relay or the HTTP client starts it), any early bytes from the target
   * unshifted, and an error listener parked on it; rejects with DialError only.
   */
  open(route: DeviceRoute, target: Target, deadline?: number, dialBudgetMs?: number): Promise<Socket> {
    const attempt = this.attempt(route, target, deadline);
    if (dialBudgetMs !== undefined) attempt.dialBudgetMs = dialBudgetMs;
    return this.chain.connect(attempt);
  }

  /** A raw connection to the device's proxy (for forwarding absolute-form HTTP requests to an HTTP device). */
  openDevice(route: DeviceRoute): Promise<Socket> {
    return this.chain.connect(this.attempt(route, null));
  }

  /**
   * `deadline`: performance.now() by which to be done, for a failover that shares one connect timeout; default a full
   * one. `dialBudgetMs` (open): the most the dial alone may take, so a silent device leaves time for the next one.
   */
  private attempt(route: DeviceRoute, target: Target | null, deadline = performance.now() + this.connectTimeoutMs): Attempt {
    return { route, target, deadline, dialBudgetMs: this.connectTimeoutMs, dialed: false };
  }
}
