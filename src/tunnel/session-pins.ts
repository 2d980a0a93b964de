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

/** A pin in the table's recency list: a ring through a sentinel, least recently used after it, most before. */
class Entry implements Pin {
  prev: Entry = this;
  next: Entry = this;
  constructor(
    readonly key: string,
    public deviceId: number,
    public lastUse: number,
    public idleMs: number,
  ) {}
}

export class SessionPins {
  // The recency order is a list through the pins rather than the Map's insertion order: taking the Map's first entry
  // costs a walk over every entry deleted since the engine last compacted its table, more with every eviction.
  private readonly pins = new Map<string, Entry>();
  private readonly ring = new Entry('', 0, 0, 0);

  constructor(
    readonly max: number = MAX_PINS,
    private readonly clock: Clock = performance,
  ) {}

  /** The live pin, or undefined (none, or idle too long: then it is dropped). A hit does not count as a use. */
  get(key: string, now: number = this.clock.now()): Pin | undefined {
    const pin = this.pins.get(key);
    if (pin === undefined) return undefined;
    if (now - pin.lastUse > pin.idleMs) {
      this.remove(pin);
      return undefined;
    }
    return pin;
  }

  /** A connection used the pin (as get returned it): it stays another `idleMs` and becomes the most recently used. */
  use(key: string, pin: Pin, idleMs: number, now: number = this.clock.now()): void {
    // Dropped since get returned it (unlinked): the session gets a new pin on the same device.
    if (!(pin instanceof Entry) || pin.prev === pin || pin.key !== key) {
      this.set(key, pin.deviceId, idleMs, now);
      return;
    }
    pin.lastUse = now;
    pin.idleMs = idleMs;
    this.unlink(pin);
    this.append(pin);
  }

  /** Pins (or re-pins) the session to a device. */
  set(key: string, deviceId: number, idleMs: number, now: number = this.clock.now()): void {
    const pin = this.pins.get(key);
    if (pin !== undefined) {
      pin.deviceId = deviceId;
      this.use(key, pin, idleMs, now);
      return;
    }
    if (this.pins.size >= this.max && this.ring.next !== this.ring) this.remove(this.ring.next);
    const entry = new Entry(key, deviceId, now, idleMs);
    this.pins.set(key, entry);
    this.append(entry);
  }

  delete(key: string): void {
    const pin = this.pins.get(key);
    if (pin !== undefined) this.remove(pin);
  }

  get size(): number {
    return this.pins.size;
  }

  private remove(entry: Entry): void {
    this.pins.delete(entry.key);
    this.unlink(entry);
  }

  private unlink(entry: Entry): void {
    entry.prev.next = entry.next;
    entry.next.prev = entry.prev;
    entry.prev = entry.next = entry;
  }

  private append(entry: Entry): void {
    const last = this.ring.prev;
    entry.prev = last;
    entry.next = this.ring;
    last.next = entry;
    this.ring.prev = entry;
  }
}
