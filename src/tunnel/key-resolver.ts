// Key -> device route, on every proxy connection. Answers from memory almost always: the database sees a
// key once per TTL, an unknown key once per negative TTL, and a burst of connections for one key once.
import { LRUCache } from 'lru-cache';
import { hashKey } from '../core/key.js';
import type { DeviceRecord, ResolvedKey, RegistryStore } from '../store/types.js';
import type { KeyGate, LimitBook } from './limits.js';
import type { KeyRoute, RoutedDevice, PoolRoute, RouteResolver } from './routes.js';
import type { DeviceSet } from './select.js';
import type { Clock } from './types.js';

export type { Clock };

/** Prepares a pool key's devices for choosing (the device selector's prepare()). */
export type PrepareDevices = (members: readonly RoutedDevice[]) => DeviceSet<RoutedDevice>;

export interface KeyResolverOptions {
  /** Most keys remembered (known and unknown together). */
  max: number;
  /** How long a known key's route is trusted; 0 = always ask the database. */
  positiveTtlMs: number;
  /** How long an unknown key stays unknown without asking again; 0 = always ask the database. */
  negativeTtlMs: number;
}


/** One database lookup that every concurrent resolve() of the same key waits on. */
interface Flight {
  promise: Promise<KeyRoute | null>;
  /** Set by invalidate(): what this lookup read may predate the change, so it must not be used or cached. */
  stale: boolean;
}

/**
 * What the cache holds for a key: its route (null: not registered) and the same as a settled promise, so a hit hands
 * back the very object it stored (no allocation, no extra microtask for an await), or the route itself to a caller
 * that goes on synchronously (cached()).
 */
interface Known {
  readonly route: KeyRoute | null;
  readonly settled: Promise<KeyRoute | null>;
}

const UNKNOWN: Promise<KeyRoute | null> = Promise.resolve(null);
const NOT_REGISTERED: Known = Object.freeze({ route: null, settled: UNKNOWN });
// lru-cache's get() allocates an options object per call when none is passed (it only ever writes an
// optional diagnostics status into it, so one shared object serves every hit).
const GET_OPTIONS = {};
const STALE_OPTIONS = { allowStale: true };
// Re-reading after an invalidation cannot loop for long in practice; the bound just makes that certain.
const MAX_STALE_RETRIES = 3;

/** A refresh nobody waits for: a failure leaves the next connection to read the key. */
function ignore(): void {}

function routedDevice(keyHash: string, keyId: number, gate: KeyGate | null, d: DeviceRecord): RoutedDevice {
  return { nodeId: d.id, keyHash, ip: d.ip, port: d.port, protocol: d.protocol, keyId, gate, id: d.id, name: d.name ?? String(d.id), labels: d.labels };
}

/** What the resolver works with besides the store; every part optional. */
export interface KeyResolverParts {
  /** Defaults to performance (the real monotonic clock). */
  clock?: Clock | undefined;
  /** Absent: pool keys resolve to null (a resolver for callers that route device keys only). */
  prepare?: PrepareDevices | undefined;
  /** Told of every device a resolved key can use, device keys and pool members alike, before the route is used. */
  track?: ((device: RoutedDevice) => void) | undefined;
  /** Absent: limits are not enforced (every route's gate is null). */
  limits?: LimitBook | undefined;
  /**
   * Whether a key, once invalidated, should be read again at once rather than on its next connection: true while it
   * has tunnels open here, so that a new bandwidth cap reaches them without waiting for a new tunnel.
   */
  refreshOpen?: ((keyHash: string) => boolean) | undefined;
}

export class KeyResolver implements RouteResolver {
  private readonly cache: LRUCache<string, Known>;
  private readonly inflight = new Map<string, Flight>();
  private readonly positiveTtlMs: number;
  private readonly negativeTtlMs: number;
  private readonly prepare: PrepareDevices | undefined;
  private readonly track: ((device: RoutedDevice) => void) | undefined;
  private readonly limits: LimitBook | undefined;
  private readonly refreshOpen: ((keyHash: string) => boolean) | undefined;

  constructor(
    private readonly store: Pick<RegistryStore, 'resolveKey'>,
    opts: KeyResolverOptions,
    parts: KeyResolverParts = {},
  ) {
    const clock = parts.clock ?? performance;
    this.prepare = parts.prepare;
    this.track = parts.track;
    this.limits = parts.limits;
    this.refreshOpen = parts.refreshOpen;
    this.positiveTtlMs = opts.positiveTtlMs;
    this.negativeTtlMs = opts.negativeTtlMs;
    // ttlResolution caches the clock for 1 ms of real time (a timer) across lookups instead of reading it on every
    // hit. Only the real clock can be cached that way: any other clock is read on every check, or a check right
    // after moving it would still see the time before.
    const ttlResolution = clock === performance ? 1 : 0;
    // Expired entries stay until a lookup replaces them or the LRU pushes them out, so that a known key whose lookup fails
    // keeps its last route while the database is down (see lookup()).
    this.cache = new LRUCache({
      max: opts.max,
      ttl: Math.max(opts.positiveTtlMs, opts.negativeTtlMs, 1),
      ttlResolution,
      perf: clock,
      noDeleteOnStaleGet: true,
    });
  }

  /** The key's route, or null for a key that is not registered. Rejects when the database cannot answer. */
  resolve(key: string): Promise<KeyRoute | null> {
    return this.resolveHash(hashKey(key));
  }

  /** resolve() for a caller that has hashed the key already (the proxy listeners: one hash per connection). */
  resolveHash(keyHash: string): Promise<KeyRoute | null> {
    const hit = this.cache.get(keyHash, GET_OPTIONS);
    if (hit !== undefined) return hit.settled;
    return this.inflight.get(keyHash)?.promise ?? this.lookup(keyHash, 0);
  }

  /** What the cache says about the key now: its route, null for a key known not to be registered, undefined if it does not know. */
  cached(keyHash: string): KeyRoute | null | undefined {
    return this.cache.get(keyHash, GET_OPTIONS)?.route;
  }

  /**
   * Forgets what is known about a key, so the next connection reads the database. Called after a
   * registration or revocation on this instance, and the hook for change notifications from other
   * instances sharing the database (LISTEN/NOTIFY): they only need the key hash.
   */
  invalidate(keyHash: string): void {
    this.cache.delete(keyHash);
    const flight = this.inflight.get(keyHash);
    if (flight !== undefined) {
      flight.stale = true;
      this.inflight.delete(keyHash);
    }
    if (this.refreshOpen?.(keyHash)) this.resolveHash(keyHash).catch(ignore);
  }

  /** Forgets everything, e.g. after reconnecting to a change feed that may have missed notifications. */
  invalidateAll(): void {
    this.cache.clear();
    for (const flight of this.inflight.values()) flight.stale = true;
    this.inflight.clear();
  }

  /** Entries currently cached (known and unknown keys). */
  get size(): number {
    return this.cache.size;
  }

  /**
   * What a key may route to now: null for an unknown, disabled or expired key, and for a device key whose device is
   * disabled. An expiry is honoured within the cache TTL (the API cuts a key's tunnels when it moves the expiry into
   * the past itself).
   */
  private toKeyRoute(keyHash: string, key: ResolvedKey | null): KeyRoute | null {
    if (key === null || key.disabled || (key.expiresAt !== null && key.expiresAt.getTime() <= Date.now())) return null;
    const gate = this.limits === undefined ? null : this.limits.gate(key.id, keyHash, key.limits);
    if ('device' in key.target) {
      const record = key.devices[0];
      if (record === undefined) return null;
      const device = routedDevice(keyHash, key.id, gate, record);
      this.track?.(device);
      return device;
    }
    if (this.prepare === undefined) return null;
    const members = key.devices.map((d) => routedDevice(keyHash, key.id, gate, d));
    if (this.track !== undefined) for (const d of members) this.track(d);
    const route: PoolRoute = { keyId: key.id, keyHash, gate, set: this.prepare(members), plain: { keyId: key.id } };
    return route;
  }

  private lookup(keyHash: string, staleRetries: number): Promise<KeyRoute | null> {
    const flight: Flight = { promise: UNKNOWN, stale: false };
    flight.promise = this.store.resolveKey(keyHash).then(
      (key) => {
        if (this.inflight.get(keyHash) === flight) this.inflight.delete(keyHash);
        const route = this.toKeyRoute(keyHash, key);
        if (flight.stale) {
          // The row may have changed between our read and the invalidation (a revocation whose tunnels were
          // just closed, say): answering with it could let a revoked key open a fresh tunnel. Read again.
          if (staleRetries < MAX_STALE_RETRIES) return this.inflight.get(keyHash)?.promise ?? this.lookup(keyHash, staleRetries + 1);
          return route;
        }
        return this.remember(keyHash, route);
      },
      (err: unknown) => {
        // Errors are not cached: the next connection asks again. A key that routed before keeps routing the way it
        // did (stale if error): the database being down must not cut customers off whose keys were known, and no
        // revocation can be committed while it is down. An unknown key still fails, and is answered 503.
        if (this.inflight.get(keyHash) === flight) this.inflight.delete(keyHash);
        const stale = flight.stale ? undefined : this.cache.get(keyHash, STALE_OPTIONS);
        if (stale !== undefined && stale.route !== null) return stale.settled;
        throw err;
      },
    );
    this.inflight.set(keyHash, flight);
    return flight.promise;
  }

  private remember(keyHash: string, route: KeyRoute | null): Promise<KeyRoute | null> {
    if (route === null) {
      if (this.negativeTtlMs > 0) this.cache.set(keyHash, NOT_REGISTERED, { ttl: this.negativeTtlMs });
      return UNKNOWN;
    }
    const known: Known = { route, settled: Promise.resolve(route) };
    if (this.positiveTtlMs > 0) this.cache.set(keyHash, known, { ttl: this.positiveTtlMs });
    return known.settled;
  }
}
