// Live state of every egress device, as the device chooser needs it on every tunnel: whether it may be used at all
// (enabled, not offline in the tailnet), how many tunnels it carries, and a circuit breaker over device-level dial
// failures. The chooser scans up to thousands of devices per tunnel, so the two values it reads for each (from when
// the device may be used, and its open tunnels) sit in typed arrays indexed by a slot per device, which a prepared
// device list holds; the rest lives in one object per device for the API. Nothing runs on a timer: every
// time-dependent state is a clock time compared when read.
import type { FailureReason } from '../core/failure.js';
import type { Clock } from './types.js';

/** Consecutive device-level failures that open a device's breaker. */
export const BREAKER_FAILURES = 3;
/** How long an open breaker keeps a device out before one trial connection may test it. */
export const BREAKER_OPEN_MS = 10_000;
/**
 * How long a trial connection holds the half-open slot without reporting back. Longer than any connect timeout, so a
 * real trial always reports first; it only matters when an outcome is lost, which must not keep a device out forever.
 */
export const TRIAL_LEASE_MS = 30_000;

/**
 * Whose fault a failed connection attempt was, for the breaker and for failover:
 * - `device`: the device could not be reached or did not take the connection (offline, its address unreachable, its
 *   proxy port refused, the dial timed out). Counts against the device; another device may do better.
 * - `destination`: the TCP connection to the device was made and what followed is its proxy's business, usually an
 *   answer about the destination (HTTP 502/504, SOCKS 0x03-0x06) or a slow destination connect that kept it silent.
 *   Another device would fare no better, and the device itself is not shown to be broken.
 * - `gateway`: our side: the tailnet is down here, or our own tailscaled refused or garbled the dial. Says nothing
 *   about the device.
 */
export type FailureScope = 'device' | 'destination' | 'gateway';

/** `dialed`: the connector's Attempt.dialed, true once the TCP connection to the device was made. */
export function failureScope(reason: FailureReason, dialed: boolean): FailureScope {
  if (dialed) return 'destination';
  switch (reason) {
    case 'offline':
    case 'unreachable':
    case 'refused':
    case 'timeout':
      return 'device';
    default:
      // network-down is our tailnet; not-allowed, protocol and error before the dial come from our own tailscaled
      // (LocalAPI or its SOCKS5) or the dialer, not from the device.
      return 'gateway';
  }
}

export type Health = 'up' | 'down' | 'unknown';

export type HealthReason =
  | 'disabled' // down: the operator disabled it
  | 'offline' // down: the tailnet says it is offline
  | 'dial-failures' // down: the breaker is open after consecutive device-level failures
  | 'half-open' // unknown: the breaker's time is up; one trial connection decides
  | 'online' // up: the tailnet says it is online
  | 'connected' // up: the last connection through it succeeded (the tailnet has no opinion)
  | 'no-status'; // unknown: neither the tailnet nor a connection has said anything yet

/** A device's health as the API shows it. `since`: clock time of the change that led to it. */
export interface HealthView {
  health: Health;
  reason: HealthReason;
  since: number;
  /** The last device-level failure, while it still counts (breaker open, half-open, or failures being counted). */
  lastFailure?: FailureReason;
  openTunnels: number;
}

/** One device's live state besides the chooser's arrays. Mutated only through DeviceBoard. */
export class DeviceState {
  enabled = true;
  online: boolean | undefined = undefined;
  /** Consecutive device-level failures while the breaker is closed. */
  failures = 0;
  /** 0 while the breaker is closed; otherwise when it stops being open (half-open from then on). */
  openUntil = 0;
  /** While half-open: until when the one trial connection holds the slot (0: free). */
  trialUntil = 0;
  lastFailure: FailureReason | undefined = undefined;
  /** A connection through it has succeeded since its breaker last opened (or ever). */
  connected = false;
  connectedSince = 0;
  enabledSince: number;
  onlineSince: number;
  /** When the breaker last opened, or closed. */
  breakerSince: number;

  constructor(
    readonly id: number,
    /** Index into DeviceBoard.eligibleFrom and DeviceBoard.openTunnels; never reused for another device. */
    readonly slot: number,
    now: number,
  ) {
    this.enabledSince = now;
    this.onlineSince = now;
    this.breakerSince = now;
  }
}

export interface DeviceBoardOptions {
  clock?: Clock;
  breakerFailures?: number;
  breakerOpenMs?: number;
  trialLeaseMs?: number;
}

/** Every device's live state, by device id. One per gateway; shared by every key and pool. */
export class DeviceBoard {
  readonly clock: Clock;
  private readonly states = new Map<number, DeviceState>();
  /**
   * Per slot: the clock time from which the device may carry a new tunnel. 0 with the breaker closed, the end of the
   * open period or of the trial's lease while it is open or half-open, Infinity while disabled or offline. Replaced
   * (grown) when slots run out, so read it afresh for each choice.
   */
  eligibleFrom = new Float64Array(64);
  /** Per slot: open tunnels. Replaced together with eligibleFrom. */
  openTunnels = new Int32Array(64);
  private slots = 0;
  private readonly breakerFailures: number;
  private readonly breakerOpenMs: number;
  private readonly trialLeaseMs: number;

  constructor(opts: DeviceBoardOptions = {}) {
    this.clock = opts.clock ?? performance;
    this.breakerFailures = opts.breakerFailures ?? BREAKER_FAILURES;
    this.breakerOpenMs = opts.breakerOpenMs ?? BREAKER_OPEN_MS;
    this.trialLeaseMs = opts.trialLeaseMs ?? TRIAL_LEASE_MS;
  }

  /** The state of device `id`, created (enabled, online unknown, breaker closed) on first use. */
  state(id: number): DeviceState {
    let s = this.states.get(id);
    if (s === undefined) {
      if (this.slots === this.eligibleFrom.length) this.grow();
      s = new DeviceState(id, this.slots++, this.clock.now());
      this.states.set(id, s);
    }
    return s;
  }

  private grow(): void {
    const eligibleFrom = new Float64Array(this.eligibleFrom.length * 2);
    eligibleFrom.set(this.eligibleFrom);
    const openTunnels = new Int32Array(this.openTunnels.length * 2);
    openTunnels.set(this.openTunnels);
    this.eligibleFrom = eligibleFrom;
    this.openTunnels = openTunnels;
  }

  /**
   * Drops a deleted device. Its slot stays ineligible and is not reused, so a device list prepared before the deletion
   * can never hand out the device, nor read another device's state in its place.
   */
  forget(id: number): void {
    const s = this.states.get(id);
    if (s === undefined) return;
    this.states.delete(id);
    // Disabled for good: outcomes still reported on the old object (connections in flight) cannot make it eligible.
    s.enabled = false;
    this.refresh(s);
  }

  /** May the device carry a new tunnel now (what the chooser checks, for one device). */
  eligible(s: DeviceState, now: number = this.clock.now()): boolean {
    return now >= this.eligibleFrom[s.slot]!;
  }

  private refresh(s: DeviceState): void {
    this.eligibleFrom[s.slot] = !s.enabled || s.online === false ? Infinity : s.openUntil === 0 ? 0 : Math.max(s.openUntil, s.trialUntil);
  }

  /** From the tailnet view: true online, false offline, undefined when it does not know the device. */
  setOnline(id: number, online: boolean | undefined): void {
    const s = this.state(id);
    if (s.online === online) return;
    s.online = online;
    s.onlineSince = this.clock.now();
    this.refresh(s);
  }

  setEnabled(id: number, enabled: boolean): void {
    const s = this.state(id);
    if (s.enabled === enabled) return;
    s.enabled = enabled;
    s.enabledSince = this.clock.now();
    this.refresh(s);
  }

  tunnelOpened(s: DeviceState): void {
    this.openTunnels[s.slot]!++;
  }

  tunnelClosed(s: DeviceState): void {
    if (this.openTunnels[s.slot]! > 0) this.openTunnels[s.slot]!--;
  }

  /** Called by the chooser when it hands out a device; a half-open one gives its single trial slot to this connection. */
  taken(s: DeviceState, now: number): void {
    if (s.openUntil === 0) return;
    s.trialUntil = now + this.trialLeaseMs;
    this.refresh(s);
  }

  /** The connection through the device was set up: the device works. Closes the breaker and resets the count. */
  succeeded(s: DeviceState): void {
    const now = this.clock.now();
    if (!s.connected) {
      s.connected = true;
      s.connectedSince = now;
    }
    s.failures = 0;
    s.lastFailure = undefined;
    if (s.openUntil !== 0) {
      s.openUntil = 0;
      s.trialUntil = 0;
      s.breakerSince = now;
      this.refresh(s);
    }
  }

  /**
   * A connection attempt through the device failed. Only device-level failures count; any other outcome of a trial
   * connection frees the trial slot for the next connection, since it decided nothing. Returns the scope, so the
   * caller knows whether to fail over.
   */
  failed(s: DeviceState, reason: FailureReason, dialed: boolean): FailureScope {
    const scope = failureScope(reason, dialed);
    const now = this.clock.now();
    if (scope !== 'device') {
      if (s.openUntil !== 0 && now >= s.openUntil) {
        s.trialUntil = 0;
        this.refresh(s);
      }
      return scope;
    }
    s.lastFailure = reason;
    if (s.openUntil !== 0) {
      // While open, failures of attempts that started before it opened change nothing; once half-open, a failure is
      // the trial's verdict (only the trial was let through).
      if (now >= s.openUntil) this.open(s, now);
      return scope;
    }
    if (++s.failures >= this.breakerFailures) this.open(s, now);
    return scope;
  }

  private open(s: DeviceState, now: number): void {
    s.failures = 0;
    s.connected = false;
    s.openUntil = now + this.breakerOpenMs;
    s.trialUntil = 0;
    s.breakerSince = now;
    this.refresh(s);
  }

  /** The device's health for the API. */
  view(id: number): HealthView {
    const s = this.state(id);
    const now = this.clock.now();
    const v = this.classify(s, now);
    if (s.lastFailure !== undefined) v.lastFailure = s.lastFailure;
    return v;
  }

  private classify(s: DeviceState, now: number): HealthView {
    const openTunnels = this.openTunnels[s.slot]!;
    if (!s.enabled) return { health: 'down', reason: 'disabled', since: s.enabledSince, openTunnels };
    if (s.online === false) return { health: 'down', reason: 'offline', since: s.onlineSince, openTunnels };
    if (s.openUntil !== 0) {
      if (now < s.openUntil) return { health: 'down', reason: 'dial-failures', since: s.breakerSince, openTunnels };
      return { health: 'unknown', reason: 'half-open', since: s.openUntil, openTunnels };
    }
    // Up since the latest of the changes that made it usable again.
    const since = Math.max(s.enabledSince, s.onlineSince, s.breakerSince);
    if (s.online === true) return { health: 'up', reason: 'online', since, openTunnels };
    if (s.connected) return { health: 'up', reason: 'connected', since: Math.max(since, s.connectedSince), openTunnels };
    return { health: 'unknown', reason: 'no-status', since, openTunnels };
  }
}
