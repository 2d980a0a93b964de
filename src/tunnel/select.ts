// Chooses the device a tunnel leaves through, among the devices a key targets: the least loaded healthy one, or for a
// sticky session the one it is pinned to, else its rendezvous choice. Pure decisions over state held elsewhere
// (DeviceBoard for health and load, SessionPins for sessions): no I/O, no timers, the clock and randomness passed in.
// A key's device list is prepared once (seeds, indexes, label groups) and reused by every tunnel until it changes.
import type { DeviceBoard } from './device-health.js';
import { deviceSeed, mixFirst, sessionHash, weightRank } from './rendezvous.js';
import { MAX_PINS, pinKey, SessionPins } from './session-pins.js';

export interface Candidate {
  readonly id: number;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** What one connection asks for, from its key and the parameters in its user name. */
export interface Selection {
  keyId: number;
  session?: string | undefined;
  /** Minutes a session's pin survives without a connection. */
  sessTimeMin?: number | undefined;
  /** When the session's device is down, refuse instead of moving the session. */
  strict?: boolean | undefined;
  /** Matched case-insensitively against the device label `country`. */
  country?: string | undefined;
  /** A device id (decimal) or name within the key's target. */
  device?: string | undefined;
}

/** Why no device was chosen; the front ends answer 502 with this as X-Tailgate-Error, SOCKS5 with 0x04. */
export type Refusal = 'no_device' | 'session_device_down';

export const DEFAULT_SESSTIME_MIN = 10;
/** Further devices tried after a device-level failure, all within the one connect timeout. */
export const MAX_FAILOVERS = 2;

const DECIMAL = /^[0-9]+$/;
const NOT_ELIGIBLE = 0x7fffffff;

/** A prepared device list: the devices of one key's target, with what choosing needs precomputed. */
export class DeviceSet<D extends Candidate> {
  readonly seeds: Uint32Array;
  /** @internal mixFirst of each seed, what the chooser's rendezvous loop hashes with (see weightRank). */
  readonly seedsFirst: Int32Array;
  /** DeviceBoard slots, by index. */
  readonly slots: Int32Array;
  private readonly indexById = new Map<number, number>();
  private readonly indexByName = new Map<string, number>();
  /** Lower-cased `country` label per device ('' without one). */
  private readonly countryOf: string[];
  // Built on first use; bounded by the devices in the list, never by what clients ask for.
  private byCountry: Map<string, DeviceSet<D>> | undefined;
  private singles: (DeviceSet<D> | undefined)[] | undefined;

  constructor(
    readonly devices: readonly D[],
    slots: ArrayLike<number>,
  ) {
    this.slots = Int32Array.from(slots);
    this.seeds = new Uint32Array(devices.length);
    this.seedsFirst = new Int32Array(devices.length);
    this.countryOf = new Array<string>(devices.length);
    for (let i = 0; i < devices.length; i++) {
      const d = devices[i]!;
      this.seeds[i] = deviceSeed(d.id);
      this.seedsFirst[i] = mixFirst(this.seeds[i]!);
      if (!this.indexById.has(d.id)) this.indexById.set(d.id, i);
      if (!this.indexByName.has(d.name)) this.indexByName.set(d.name, i);
      this.countryOf[i] = d.labels.country?.toLowerCase() ?? '';
    }
  }

  get size(): number {
    return this.devices.length;
  }

  indexOf(id: number): number {
    return this.indexById.get(id) ?? -1;
  }

  /**
   * The devices left by the filters. `device` is an id when it is decimal and one of the devices has that id,
   * otherwise a name (a device named like another's id is reached through its own id).
   */
  narrow(country: string | undefined, device: string | undefined): DeviceSet<D> {
    if (device !== undefined) {
      let i = DECIMAL.test(device) ? this.indexOf(Number(device)) : -1;
      if (i < 0) i = this.indexByName.get(device) ?? -1;
      if (i < 0 || (country !== undefined && this.countryOf[i] !== country.toLowerCase())) return this.empty();
      this.singles ??= new Array<DeviceSet<D> | undefined>(this.devices.length);
      return (this.singles[i] ??= new DeviceSet([this.devices[i]!], [this.slots[i]!]));
    }
    if (country === undefined) return this;
    this.byCountry ??= this.groupByCountry();
    return this.byCountry.get(country.toLowerCase()) ?? this.empty();
  }

  private groupByCountry(): Map<string, DeviceSet<D>> {
    const groups = new Map<string, number[]>();
    for (let i = 0; i < this.countryOf.length; i++) {
      const c = this.countryOf[i]!;
      if (c === '') continue;
      let g = groups.get(c);
      if (g === undefined) groups.set(c, (g = []));
      g.push(i);
    }
    const sets = new Map<string, DeviceSet<D>>();
    for (const [c, g] of groups) {
      sets.set(
        c,
        new DeviceSet(
          g.map((i) => this.devices[i]!),
          g.map((i) => this.slots[i]!),
        ),
      );
    }
    return sets;
  }

  private empty(): DeviceSet<D> {
    return EMPTY as DeviceSet<D>;
  }
}

const EMPTY = new DeviceSet<Candidate>([], []);

export interface SelectorOptions {
  /** In [0, 1), like Math.random: breaks ties between equally loaded devices. */
  random?: () => number;
  maxPins?: number;
}

export class DeviceSelector {
  readonly pins: SessionPins;
  private readonly random: () => number;

  constructor(
    readonly board: DeviceBoard,
    opts: SelectorOptions = {},
  ) {
    this.random = opts.random ?? Math.random;
    this.pins = new SessionPins(opts.maxPins ?? MAX_PINS, board.clock);
  }

  /** Prepares a key's device list; call again when the list or a device's labels or name change. */
  prepare<D extends Candidate>(devices: readonly D[]): DeviceSet<D> {
    return new DeviceSet(
      devices,
      devices.map((d) => this.board.state(d.id).slot),
    );
  }

  /** The device for one connection, or why there is none. A session's pin is created, kept or moved here. */
  choose<D extends Candidate>(set: DeviceSet<D>, sel: Selection): D | Refusal {
    const now = this.board.clock.now();
    const pool = set.narrow(sel.country, sel.device);
    if (sel.session === undefined) return this.take(pool, this.leastLoaded(pool, now), now) ?? 'no_device';
    const key = pinKey(sel.keyId, sel.session);
    const idleMs = (sel.sessTimeMin ?? DEFAULT_SESSTIME_MIN) * 60_000;
    const pin = this.pins.get(key, now);
    if (pin !== undefined) {
      const i = pool.indexOf(pin.deviceId);
      if (i >= 0 && now >= this.board.eligibleFrom[pool.slots[i]!]!) {
        this.pins.use(key, pin, idleMs, now);
        return this.take(pool, i, now)!;
      }
      // Down, or gone from the key's target; a pinned device the filters leave out is a new choice, not a failure.
      if (sel.strict === true && (i >= 0 || set.indexOf(pin.deviceId) < 0)) return 'session_device_down';
    } else if (sel.strict === true) {
      // A strict session's device is its rendezvous choice among every device the filters allow, up or down: the same
      // in every worker process and gateway, also in one that has not seen the session yet (pins are per process), so
      // while that device is down the session is refused everywhere rather than started on another device somewhere.
      const top = this.rendezvous(pool, sessionHash(sel.keyId, sel.session), now, true);
      if (top < 0) return 'no_device';
      if (now < this.board.eligibleFrom[pool.slots[top]!]!) return 'session_device_down';
      this.pins.set(key, pool.devices[top]!.id, idleMs, now);
      return this.take(pool, top, now)!;
    }
    const i = this.rendezvous(pool, sessionHash(sel.keyId, sel.session), now);
    if (i < 0) return 'no_device';
    this.pins.set(key, pool.devices[i]!.id, idleMs, now);
    return this.take(pool, i, now)!;
  }

  /**
   * After a device-level failure (see failureScope), the next device to try, or null: no eligible device left, the
   * attempts used up (`tried` holds every device tried so far, the failed one last), or a strict session, which
   * fails with its device. A session moves its pin to the device chosen, so it stays where it last worked.
   */
  failover<D extends Candidate>(set: DeviceSet<D>, sel: Selection, tried: readonly D[]): D | null {
    if (tried.length > MAX_FAILOVERS) return null;
    if (sel.session !== undefined && sel.strict === true) return null;
    const now = this.board.clock.now();
    const pool = set.narrow(sel.country, sel.device);
    // The devices tried are made ineligible for this one choice, so the per-tunnel loops need no exclusion test.
    const from = this.board.eligibleFrom;
    const hidden: number[] = [];
    for (const d of tried) {
      const i = pool.indexOf(d.id);
      if (i < 0) continue;
      const slot = pool.slots[i]!;
      hidden.push(slot, from[slot]!);
      from[slot] = Infinity;
    }
    let i: number;
    try {
      i = sel.session === undefined ? this.leastLoaded(pool, now) : this.rendezvous(pool, sessionHash(sel.keyId, sel.session), now);
    } finally {
      // In reverse, so a device listed twice gets its own value back last.
      for (let k = hidden.length - 2; k >= 0; k -= 2) from[hidden[k]!] = hidden[k + 1]!;
    }
    if (i >= 0 && sel.session !== undefined) {
      this.pins.set(pinKey(sel.keyId, sel.session), pool.devices[i]!.id, (sel.sessTimeMin ?? DEFAULT_SESSTIME_MIN) * 60_000, now);
    }
    return this.take(pool, i, now);
  }

  private take<D extends Candidate>(pool: DeviceSet<D>, i: number, now: number): D | null {
    if (i < 0) return null;
    const d = pool.devices[i]!;
    // Only a half-open device (eligible from a time above 0) has a trial slot to give; the rest need no lookup.
    if (this.board.eligibleFrom[pool.slots[i]!] !== 0) this.board.taken(this.board.state(d.id), now);
    return d;
  }

  /** Index of the eligible device with the fewest open tunnels, a random one among equals; -1 when none. */
  private leastLoaded(pool: DeviceSet<Candidate>, now: number): number {
    const slots = pool.slots;
    const from = this.board.eligibleFrom;
    const open = this.board.openTunnels;
    const size = slots.length;
    // The first pass counts the devices tied at the lowest load and notes the first and last of them; the r-th in
    // list order is the choice, found without a second pass when all are tied, or it is the first or the last, else
    // by a scan from the nearer of those two. A scan from a random start taking the first minimum would need one pass
    // and no count, but when loads differ it favours the tied device after the longest run of busier ones, and would
    // pile a burst of new tunnels onto it.
    // Eligibility, a float compare behind a second lookup, is read only for a device loaded no more than the least.
    let min = NOT_ELIGIBLE;
    let n = 0;
    let first = -1;
    let last = -1;
    for (let i = 0; i < size; i++) {
      const k = slots[i]!;
      const load = open[k]!;
      if (load > min || now < from[k]!) continue;
      if (load < min) {
        min = load;
        n = 0;
        first = i;
      }
      n++;
      last = i;
    }
    if (min === NOT_ELIGIBLE) return -1;
    if (n === 1) return first;
    let r = Math.floor(this.random() * n);
    if (n === size) return r;
    if (r === 0) return first;
    if (r === n - 1) return last;
    // Counting down the tied devices passed.
    if (r < n >> 1) {
      for (let i = first + 1; i < last; i++) {
        const k = slots[i]!;
        if (open[k] === min && now >= from[k]! && --r === 0) return i;
      }
    } else {
      r = n - 1 - r;
      for (let i = last - 1; i > first; i--) {
        const k = slots[i]!;
        if (open[k] === min && now >= from[k]! && --r === 0) return i;
      }
    }
    return -1;
  }

  /**
   * Index of the eligible device with the highest weight for the session (ties: the lower id); -1 when none.
   * `anyHealth`: of every device in the pool, eligible or not.
   */
  private rendezvous(pool: DeviceSet<Candidate>, h: number, now: number, anyHealth = false): number {
    const { slots, seedsFirst, devices } = pool;
    const from = this.board.eligibleFrom;
    const hFirst = mixFirst(h);
    let best = -1;
    // The lowest rank there is; a device with it is taken through the tie test while none has been.
    let bestRank = -0x80000000;
    for (let i = 0; i < seedsFirst.length; i++) {
      const rank = weightRank(hFirst, seedsFirst[i]!);
      // Eligibility only for a device that would take the lead: skipping an ineligible device that would not changes
      // nothing, and in a random order the lead changes about ln(n) times, so the loop is mostly the hash.
      if (rank < bestRank || (rank === bestRank && best >= 0 && devices[i]!.id >= devices[best]!.id)) continue;
      if (!anyHealth && now < from[slots[i]!]!) continue;
      best = i;
      bestRank = rank;
    }
    return best;
  }
}

/**
 * Whether one device passes the user name's filters, with narrow()'s rules; for a device key, whose target is a single
 * device and needs no set.
 */
export function fitsFilters(d: Candidate, country: string | undefined, device: string | undefined): boolean {
  if (device !== undefined && !(DECIMAL.test(device) && Number(device) === d.id) && d.name !== device) return false;
  return country === undefined || d.labels.country?.toLowerCase() === country.toLowerCase();
}
