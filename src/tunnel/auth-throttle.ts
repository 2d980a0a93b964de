// Brute-force brake for the authenticate stage: proxy credential failures are counted per client address, and an
// address past its limit is refused for a cool-down before anything is parsed or looked up, so guessing keys costs
// the guesser time and the key store nothing.
import { LRUCache } from 'lru-cache';
import { isIPv4 } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Refusal } from './refusal.js';
import type { Clock } from './types.js';

export interface AuthThrottleOptions {
  /** Failures an address may make within a minute; the one that reaches it starts the cool-down. */
  failuresPerMinute: number;
  /** How long a throttled address is refused. */
  cooldownMs: number;
  /** Addresses tracked at once (least recently failing dropped first). */
  maxAddresses?: number | undefined;
  clock?: Clock | undefined;
  /** Told once per address per cool-down, when it starts (to log it). */
  onThrottle?: ((address: string, failures: number, cooldownMs: number) => void) | undefined;
}

/**
 * A failing address's state: a token bucket of `limit` failures that refills at `limit` a minute (a sliding window
 * without keeping timestamps), and the end of its cool-down while it is throttled.
 */
interface Entry {
  tokens: number;
  at: number;
  blockedUntil: number;
}

const WINDOW_MS = 60_000;
export const DEFAULT_THROTTLE_ADDRESSES = 100_000;
// One shared options object, as in key-resolver.ts: lru-cache's get() otherwise allocates one per call.
const GET_OPTIONS = {};
const IPV4_MAPPED = '::ffff:';

/**
 * The unit an address is counted under: an IPv4 address as it is (one address is what one subscriber usually has),
 * an IPv6 address by its /64 (the smallest prefix a site is given: a host picks any of its 2^64 addresses freely, so
 * counting single IPv6 addresses would limit nothing). An IPv4-mapped IPv6 address counts as its IPv4 address.
 */
export function throttleUnit(address: string): string {
  // Node hands over normalised addresses: no colon is IPv4, and this test is all an IPv4 client pays.
  if (address.indexOf(':') < 0) return address;
  if (address.startsWith(IPV4_MAPPED) && isIPv4(address.slice(IPV4_MAPPED.length))) return address.slice(IPV4_MAPPED.length);
  const zone = address.indexOf('%');
  const bare = zone < 0 ? address : address.slice(0, zone);
  const gap = bare.indexOf('::');
  const head = (gap < 0 ? bare : bare.slice(0, gap)).split(':').filter((g) => g !== '');
  let groups: string[];
  if (gap < 0) groups = head;
  else {
    const tail = bare.slice(gap + 2).split(':').filter((g) => g !== '');
    // A trailing dotted IPv4 part stands for two groups.
    const tailGroups = tail.length > 0 && tail[tail.length - 1]!.includes('.') ? tail.length + 1 : tail.length;
    groups = [...head, ...Array<string>(Math.max(0, 8 - head.length - tailGroups)).fill('0'), ...tail];
  }
  const prefix = groups.slice(0, 4);
  while (prefix.length < 4) prefix.push('0');
  return `${prefix.map((g) => Number.parseInt(g, 16).toString(16)).join(':')}::/64`;
}

export class AuthThrottle {
  private readonly entries: LRUCache<string, Entry>;
  private readonly limit: number;
  private readonly cooldownMs: number;
  private readonly refillPerMs: number;
  private readonly clock: Clock;
  private readonly onThrottle: AuthThrottleOptions['onThrottle'];

  constructor(opts: AuthThrottleOptions) {
    if (!(opts.failuresPerMinute >= 1)) throw new RangeError('failuresPerMinute must be at least 1 (no throttle: pass none)');
    this.limit = opts.failuresPerMinute;
    this.cooldownMs = opts.cooldownMs;
    this.refillPerMs = opts.failuresPerMinute / WINDOW_MS;
    this.clock = opts.clock ?? performance;
    this.onThrottle = opts.onThrottle;
    this.entries = new LRUCache({ max: opts.maxAddresses ?? DEFAULT_THROTTLE_ADDRESSES });
  }

  /** Addresses tracked now (failing within the window, or throttled). */
  get size(): number {
    return this.entries.size;
  }

  /**
   * null: the address may authenticate. Otherwise the refusal to answer with, the database untouched. An address
   * that never failed costs one map lookup.
   */
  refusal(unit: string): Refusal | null {
    const entry = this.entries.get(unit, GET_OPTIONS);
    if (entry === undefined || entry.blockedUntil === 0) return null;
    const left = entry.blockedUntil - this.clock.now();
    if (left <= 0) {
      entry.blockedUntil = 0;
      return null;
    }
    return {
      reason: 'auth_rate_limited',
      proxyStatus: 'http_request_denied',
      details: 'auth_rate_limited',
      retryAfterS: Math.max(1, Math.ceil(left / 1000)),
      text: 'too many failed authentication attempts from this address; try again later',
    };
  }

  /** A credential failure from this unit. Successes are not counted and forgive nothing (see README). */
  failed(unit: string): void {
    const now = this.clock.now();
    let entry = this.entries.get(unit, GET_OPTIONS);
    if (entry === undefined) {
      entry = { tokens: this.limit, at: now, blockedUntil: 0 };
      this.entries.set(unit, entry);
    } else {
      entry.tokens = Math.min(this.limit, entry.tokens + (now - entry.at) * this.refillPerMs);
      entry.at = now;
    }
    entry.tokens -= 1;
    // Less than one failure left: the next would be past the limit. Within a cool-down nothing reaches here (refused
    // before any lookup), so this starts one cool-down per burst.
    if (entry.tokens < 1 && entry.blockedUntil <= now) {
      entry.blockedUntil = now + this.cooldownMs;
      this.onThrottle?.(unit, this.limit, this.cooldownMs);
    }
  }
}
