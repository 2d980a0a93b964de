// Which device each sticky session is on: (key id, session) → device id, kept until the session has been idle for its
// sesstime. Bounded: past `max` entries the least recently used pin goes, so a client inventing a new session name
// per connection costs a fixed amount of memory. Expiry is checked when a pin is read; there is no timer.
import type { Clock } from './types.js';

export const MAX_PINS = 100_000;

export interface Pin {
  deviceId: number;
  /** Clock time of the last connection that used the pin. */
  lastUse: number;
  /** How long the pin survives without a connection (the session's sesstime). */
  idleMs: number;
}

/** The table's key for a session of a key. Session names are [A-Za-z0-9_], so ':' cannot be part of one. */
export function pinKey(keyId: number, session: string): string {
  return `${keyId}:${session}`;
}

export class SessionPins {
  // A Map iterates in insertion order, so re-inserting on use keeps the least recently used entry first.
  private readonly pins = new Map<string, Pin>();

  constructor(
    readonly max: number = MAX_PINS,
    private readonly clock: Clock = performance,
  ) {}

  /** The live pin, or undefined (none, or idle too long: then it is dropped). A hit does not count as a use. */
  get(key: string, now: number = this.clock.now()): Pin | undefined {
    const pin = this.pins.get(key);
    if (pin === undefined) return undefined;
    if (now - pin.lastUse > pin.idleMs) {
      this.pins.delete(key);
      return undefined;
    }
    return pin;
  }

  /** A connection used the pin: it stays for another `idleMs` and becomes the most recently used. */
  use(key: string, pin: Pin, idleMs: number, now: number = this.clock.now()): void {
    pin.lastUse = now;
    pin.idleMs = idleMs;
    this.pins.delete(key);
    this.pins.set(key, pin);
  }

  /** Pins (or re-pins) the session to a device. */
  set(key: string, deviceId: number, idleMs: number, now: number = this.clock.now()): void {
    const pin = this.pins.get(key);
    if (pin !== undefined) {
      pin.deviceId = deviceId;
      this.use(key, pin, idleMs, now);
      return;
    }
    if (this.pins.size >= this.max) {
      const oldest = this.pins.keys().next();
      if (oldest.done !== true) this.pins.delete(oldest.value);
    }
    this.pins.set(key, { deviceId, lastUse: now, idleMs });
  }

  delete(key: string): void {
    this.pins.delete(key);
  }

  get size(): number {
    return this.pins.size;
  }
}
