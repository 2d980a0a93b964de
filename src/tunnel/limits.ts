// Per-key limits on the data path (issue 11): how many tunnels at once, how many new ones per second, bandwidth caps
// shared by all of a key's tunnels, and a traffic quota. A key's route carries its KeyGate, or null when the key has
// no limits: the pipeline and the relay check that one field and otherwise run exactly as without this module.
// Everything here answers from memory and synchronously; the gate of a key lives as long as the gateway, so a tunnel
// always releases what it took from the gate it was admitted by, whatever happened to the key's limits meanwhile.
import { performance } from 'node:perf_hooks';
import type { Counter } from 'prom-client';
import type { KeyLimits } from '../store/types.js';
import type { Refusal } from './refusal.js';
import { periodBounds, type PeriodBounds, type QuotaLedger } from './quota.js';
import type { UsageMeter } from './usage.js';

export type LimitReason = 'tunnel-limit' | 'rate-limit' | 'quota_exceeded';

/** A bandwidth bucket holds this much of its rate (at least MIN_BUCKET_BYTES): what may pass at once after a pause. */
const BUCKET_SECONDS = 0.1;
const MIN_BUCKET_BYTES = 64 * 1024;

const TUNNEL_LIMIT: Refusal = Object.freeze({
  reason: 'tunnel-limit',
  proxyStatus: 'connection_limit_reached',
  text: "the key's limit of open tunnels is reached",
});

/** A relayed tunnel of a key with limits, as its gate follows it: for shaping, for the quota, and to cut it. */
export interface Metered extends UsageMeter {
  /** Closes the tunnel (its key used up its quota). */
  cut(why: string): void;
  /** The bucket of `direction` has tokens again: resume what it held. */
  wake(direction: Direction): void;
}

export type Direction = 'down' | 'up';

/**
 * A token bucket of bytes for one direction of one key, shared by all its tunnels. Tunnels take tokens for what they
 * have just sent; a tunnel that drives the bucket below zero pauses its source and waits here. One timer per bucket
 * (not per tunnel) wakes every waiting tunnel when the debt is paid; nothing runs while no tunnel waits.
 */
export class Bucket {
  private tokens: number;
  private at: number;
  private burst: number;
  private readonly held = new Set<Metered>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private rate: number,
    readonly direction: Direction,
  ) {
    this.burst = burstOf(rate);
    this.tokens = this.burst;
    this.at = performance.now();
  }

  get bytesPerSecond(): number {
    return this.rate;
  }

  /** Takes `n` bytes' worth (they have been sent). false: the bucket is in debt, the caller must pause and hold(). */
  take(n: number): boolean {
    const now = performance.now();
    const tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.rate) / 1000) - n;
    this.tokens = tokens;
    this.at = now;
    return tokens >= 0;
  }

  hold(t: Metered): void {
    this.held.add(t);
    if (this.timer === undefined) this.schedule();
  }

  /** A closing tunnel leaves the queue. */
  unhold(t: Metered): void {
    this.held.delete(t);
  }

  /** A new rate for every tunnel of the key, open ones included; what is owed is paid at the new rate. */
  setRate(rate: number): void {
    this.take(0);
    this.rate = rate;
    this.burst = burstOf(rate);
    if (this.tokens > this.burst) this.tokens = this.burst;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.schedule();
    }
  }

  /** The cap is gone: every waiting tunnel goes on at once. */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.wakeAll();
  }

  private schedule(): void {
    const ms = Math.max(1, Math.ceil((-this.tokens * 1000) / this.rate));
    this.timer = setTimeout(onBucketTimer, ms, this);
  }

  /** @internal the timer */
  due(): void {
    this.timer = undefined;
    if (this.held.size === 0) return;
    if (!this.take(0)) {
      this.schedule();
      return;
    }
    this.wakeAll();
  }

  private wakeAll(): void {
    // resume() emits data on a later tick, so nobody is added to `held` while it is walked.
    for (const t of this.held) t.wake(this.direction);
    this.held.clear();
  }
}

function onBucketTimer(bucket: Bucket): void {
  bucket.due();
}

function burstOf(rate: number): number {
  return Math.max(MIN_BUCKET_BYTES, rate * BUCKET_SECONDS);
}

/** What the process that counts places and rate tokens for several processes answers: admitted, or why not. */
export type SharedVerdict = null | 'tunnel-limit' | { waitS: number };

/**
 * Where `maxTunnels` and `tunnelsPerSecond` are counted when several processes carry one gateway's tunnels (the worker
 * processes, src/workers/): the count must be one for all of them, so admission asks it. Only gates with one of those
 * two limits ever call it; keys without limits, or with caps and quotas only, never do.
 */
export interface SharedAdmission {
  /** Asks for one place and one rate token of the gate's key; resolves with gate.settle(verdict). */
  acquire(gate: KeyGate): Promise<Refusal | null>;
  /** Gives back a place acquire() granted. */
  release(keyId: number): void;
  /**
   * The gate's relayed tunnels here changed in number (or its caps came or went: 0 when it has none now), so the
   * process that shares the key's bandwidth caps out can give this one its part (KeyGate.setShare). Only gates with a
   * bandwidth cap call it.
   */
  shaping(keyId: number, tunnels: number): void;
}

/** What the gates of all keys share: the quota ledger, the refusal counter, the quota timer. */
export interface LimitBookOptions {
  /** Absent: places and rate tokens are counted here, in memory (one process). */
  shared?: SharedAdmission | undefined;
  ledger: QuotaLedger;
  refusals: Counter<'reason'>;
  /** How often the open tunnels of keys with a quota are checked against it. */
  quotaCheckMs: number;
  /** Tunnels of a key opened before it had any limit: handed to the gate, so that a new cap shapes them too. */
  adopt?: ((keyHash: string, gate: KeyGate) => void) | undefined;
  /** Where the log goes when the quota cuts tunnels. */
  onQuotaCut?: ((keyId: number, tunnels: number) => void) | undefined;
  /**
   * Brings the ledger up to date with an open tunnel of a quota key before the check (usage accounting otherwise
   * samples open tunnels only on its flush cycle, which would stretch the bound to the flush interval).
   */
  sample?: ((tunnel: Metered) => void) | undefined;
}

/** The limits of one key on this gateway, and what it is using now. */
export class KeyGate {
  /** Admitted and not yet released: open tunnels and forwarded requests in flight. */
  open = 0;
  /** Of those, the ones whose place a SharedAdmission granted (and must be given back there). */
  private sharedOpen = 0;
  /** Relayed tunnels open now (shaping, the quota). */
  readonly tunnels = new Set<Metered>();
  down: Bucket | null = null;
  up: Bucket | null = null;
  /** The key's caps as configured; the buckets run at `share` of them (1 in one process). */
  private capDown: number | undefined;
  private capUp: number | undefined;
  private share = 1;
  private maxTunnels = Infinity;
  private rate = 0;
  private burst = 0;
  private rateTokens = 0;
  private rateAt = 0;
  private quotaBytes = -1;
  private period: PeriodBounds | undefined;
  private periodName: 'day' | 'month' | 'total' = 'total';

  constructor(
    readonly keyId: number,
    readonly book: LimitBook,
    limits: KeyLimits,
  ) {
    this.update(limits);
  }

  /** New limits take effect for the next tunnel; caps at once for open tunnels too. */
  update(limits: KeyLimits): void {
    this.maxTunnels = limits.maxTunnels ?? Infinity;
    const rate = limits.tunnelsPerSecond ?? 0;
    const burst = rate > 0 ? (limits.tunnelBurst ?? Math.max(1, Math.ceil(rate))) : 0;
    if (rate !== this.rate || burst !== this.burst) {
      this.rate = rate;
      this.burst = burst;
      this.rateTokens = burst;
      this.rateAt = performance.now();
    }
    const wasShaped = this.shaped;
    this.capDown = limits.bytesPerSecondDown;
    this.capUp = limits.bytesPerSecondUp;
    this.reshape();
    if (this.book.shared !== undefined && (this.shaped || wasShaped)) this.book.shared.shaping(this.keyId, this.shaped ? this.tunnels.size : 0);
    const q = limits.quota;
    if (q === undefined) {
      this.quotaBytes = -1;
      this.period = undefined;
      this.book.quotaGone(this);
    } else {
      this.quotaBytes = q.bytes;
      if (q.period !== this.periodName || this.period === undefined) {
        this.periodName = q.period;
        this.period = periodBounds(q.period, Date.now());
        this.book.ledger.track(this.keyId, this.period.start);
      }
      if (this.tunnels.size > 0) this.book.quotaFollowed(this);
    }
  }

  /**
   * The part of the key's bandwidth caps this process may use (0 < share <= 1): when several processes carry the key's
   * tunnels, the caps are split between them by their number of the key's tunnels, so that together they hold the cap.
   */
  setShare(share: number): void {
    if (share === this.share || !(share > 0)) return;
    this.share = share;
    this.reshape();
  }

  private reshape(): void {
    this.down = capped(this.down, this.capDown === undefined ? undefined : this.capDown * this.share, 'down');
    this.up = capped(this.up, this.capUp === undefined ? undefined : this.capUp * this.share, 'up');
  }

  get hasQuota(): boolean {
    return this.quotaBytes >= 0;
  }

  get shaped(): boolean {
    return this.down !== null || this.up !== null;
  }

  /** The current quota period, rolled over when it has ended. */
  bounds(): PeriodBounds {
    let p = this.period!;
    if (p.resetsAt !== null && Date.now() >= p.resetsAt) {
      p = this.period = periodBounds(this.periodName, Date.now());
      this.book.ledger.track(this.keyId, p.start);
    }
    return p;
  }

  /** True when the key has used its quota for the period (false without a quota). */
  exhausted(): boolean {
    if (this.quotaBytes < 0) return false;
    return this.book.ledger.usedSince(this.keyId, this.bounds().start) >= this.quotaBytes;
  }

  /**
   * Admits one tunnel or request (which must release() exactly once), or says why not. A promise only when the places
   * and rate tokens are counted by another process (SharedAdmission) and this key has one of those limits.
   */
  admit(): Refusal | null | Promise<Refusal | null> {
    if (this.quotaBytes >= 0 && this.exhausted()) return this.book.refused(quotaRefusal(this.period!));
    const shared = this.book.shared;
    if (shared !== undefined && (this.maxTunnels !== Infinity || this.rate > 0)) return shared.acquire(this);
    if (this.open >= this.maxTunnels) return this.book.refused(TUNNEL_LIMIT);
    if (this.rate > 0) {
      const now = performance.now();
      const tokens = Math.min(this.burst, this.rateTokens + ((now - this.rateAt) * this.rate) / 1000);
      this.rateAt = now;
      if (tokens < 1) {
        this.rateTokens = tokens;
        return this.book.refused(rateRefusal((1 - tokens) / this.rate));
      }
      this.rateTokens = tokens - 1;
    }
    this.open++;
    return null;
  }

  /** The limits a SharedAdmission counts against: places (Infinity: none), tunnels per second (0: none), burst. */
  get admission(): { maxTunnels: number; rate: number; burst: number } {
    return { maxTunnels: this.maxTunnels, rate: this.rate, burst: this.burst };
  }

  /** What a SharedAdmission's verdict means here: a place taken, or a refusal counted. */
  settle(verdict: SharedVerdict): Refusal | null {
    if (verdict === null) {
      this.open++;
      this.sharedOpen++;
      return null;
    }
    return this.book.refused(verdict === 'tunnel-limit' ? TUNNEL_LIMIT : rateRefusal(verdict.waitS));
  }

  /** The end of an admitted tunnel or request. `slot` false: it was not admitted here (adopted when its key got limits). */
  release(slot = true): void {
    if (!slot) return;
    if (this.open > 0) this.open--;
    if (this.sharedOpen > 0) {
      this.sharedOpen--;
      this.book.shared!.release(this.keyId);
    }
  }

  /** A relayed tunnel starts (or is adopted): followed for shaping and the quota. */
  follow(t: Metered): void {
    this.tunnels.add(t);
    if (this.quotaBytes >= 0) this.book.quotaFollowed(this);
    if (this.book.shared !== undefined && this.shaped) this.book.shared.shaping(this.keyId, this.tunnels.size);
  }

  unfollow(t: Metered): void {
    const had = this.tunnels.delete(t);
    this.down?.unhold(t);
    this.up?.unhold(t);
    if (had && this.book.shared !== undefined && this.shaped) this.book.shared.shaping(this.keyId, this.tunnels.size);
  }
}

function capped(bucket: Bucket | null, rate: number | undefined, direction: Direction): Bucket | null {
  if (rate === undefined) {
    bucket?.close();
    return null;
  }
  if (bucket === null) return new Bucket(rate, direction);
  if (bucket.bytesPerSecond !== rate) bucket.setRate(rate);
  return bucket;
}

function rateRefusal(waitS: number): Refusal {
  return { reason: 'rate-limit', proxyStatus: 'connection_limit_reached', retryAfterS: Math.max(1, Math.ceil(waitS)), text: "the key's rate of new tunnels is exceeded" };
}

function quotaRefusal(p: PeriodBounds): Refusal {
  const r: Refusal = { reason: 'quota_exceeded', proxyStatus: 'http_request_denied', details: 'quota_exceeded', text: "the key's traffic quota is used up" };
  if (p.resetsAt !== null) r.retryAfterS = Math.max(1, Math.ceil((p.resetsAt - Date.now()) / 1000));
  return r;
}

/** Every key's gate on this gateway, and the timer that holds open tunnels to their key's quota. */
export class LimitBook {
  private readonly gates = new Map<number, KeyGate>();
  /** Gates with a quota and relayed tunnels open: what the quota timer checks. */
  private readonly quotaOpen = new Set<KeyGate>();
  private timer: NodeJS.Timeout | undefined;
  readonly ledger: QuotaLedger;
  readonly shared: SharedAdmission | undefined;
  private readonly refusals: Counter<'reason'>;
  private readonly refusalsBy: Record<LimitReason, { inc(): void }>;

  constructor(private readonly opts: LimitBookOptions) {
    this.ledger = opts.ledger;
    this.shared = opts.shared;
    this.refusals = opts.refusals;
    this.refusalsBy = {
      'tunnel-limit': this.refusals.labels('tunnel-limit'),
      'rate-limit': this.refusals.labels('rate-limit'),
      quota_exceeded: this.refusals.labels('quota_exceeded'),
    };
  }

  /**
   * The key's gate for a route being built, or null for a key without limits (and no gate from earlier). Updates an
   * existing gate to `limits`, so open tunnels follow a new cap at once.
   */
  gate(keyId: number, keyHash: string, limits: KeyLimits): KeyGate | null {
    let gate = this.gates.get(keyId);
    if (gate !== undefined) {
      gate.update(limits);
      return gate;
    }
    if (isEmpty(limits)) return null;
    gate = new KeyGate(keyId, this, limits);
    this.gates.set(keyId, gate);
    this.opts.adopt?.(keyHash, gate);
    return gate;
  }

  /** The gate of a key, if it ever had limits here. */
  get(keyId: number): KeyGate | undefined {
    return this.gates.get(keyId);
  }

  refused(r: Refusal): Refusal {
    this.refusalsBy[r.reason as LimitReason].inc();
    return r;
  }

  quotaFollowed(gate: KeyGate): void {
    this.quotaOpen.add(gate);
    if (this.timer === undefined) {
      this.timer = setInterval(onQuotaTimer, this.opts.quotaCheckMs, this);
      this.timer.unref();
    }
  }

  quotaGone(gate: KeyGate): void {
    this.quotaOpen.delete(gate);
    this.stopIfIdle();
  }

  /** @internal the timer: cuts the open tunnels of every key that has used up its quota. */
  checkQuotas(): void {
    for (const gate of this.quotaOpen) {
      if (gate.tunnels.size === 0 || !gate.hasQuota) {
        this.quotaOpen.delete(gate);
        continue;
      }
      const { sample } = this.opts;
      if (sample !== undefined) for (const t of gate.tunnels) sample(t);
      if (!gate.exhausted()) continue;
      const n = gate.tunnels.size;
      for (const t of [...gate.tunnels]) t.cut('quota exhausted');
      this.quotaOpen.delete(gate);
      this.opts.onQuotaCut?.(gate.keyId, n);
    }
    this.stopIfIdle();
  }

  private stopIfIdle(): void {
    if (this.quotaOpen.size > 0 || this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const gate of this.gates.values()) {
      gate.down?.close();
      gate.up?.close();
    }
  }
}

function onQuotaTimer(book: LimitBook): void {
  book.checkQuotas();
}

function isEmpty(limits: KeyLimits): boolean {
  for (const _ in limits) return false;
  return true;
}
