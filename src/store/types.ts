import type { DeviceProtocol } from '../core/route.js';

export interface NodeRecord {
  id: number;
  name: string | null;
  ip: string;
  ipv6: string | null;
  port: number;
  protocol: DeviceProtocol;
  /** SHA-256 of the proxy key, hex. The key itself is never stored. */
  keyHash: string;
  headscaleNodeId: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface NodeBinding {
  keyHash: string;
  ip: string;
  ipv6?: string | null;
  port: number;
  protocol: DeviceProtocol;
  name?: string | null;
  headscaleNodeId?: string | null;
}

/** A binding created, changed or removed; 'delete' means the key no longer routes anywhere. */
export interface NodeChange {
  op: 'insert' | 'update' | 'delete';
  keyHash: string;
}

/**
 * The registry as the binding service and the key resolver know it: a node is a key that targets a single device,
 * shown with that device's fields and the key's id (RegistryStore has keys, devices and pools apart). One
 * implementation (SQL via `postgres`) serves both a real server and the embedded one.
 */
export interface NodeStore {
  findByKeyHash(keyHash: string): Promise<NodeRecord | null>;
  /**
   * For a key that targets a device, updates that device; for an unknown key, creates a device and a key targeting
   * it. Throws StoreError 'conflict' for a key that targets a pool.
   */
  upsert(binding: NodeBinding): Promise<{ node: NodeRecord; created: boolean }>;
  list(): Promise<NodeRecord[]>;
  get(id: number): Promise<NodeRecord | null>;
  /**
   * Deletes the key (and its device, unless another key targets it or a pool lists it) and returns the node as it
   * was, or null if there was none.
   */
  remove(id: number): Promise<NodeRecord | null>;
  /** Throws when the database cannot answer. */
  ping(): Promise<void>;
  /**
   * Follows binding changes committed by anyone on this database (other gateways included): onChange for
   * each changed key, onResync whenever notifications may have been missed (at every (re)connection of the
   * listener: `reconnected`, and changes committed meanwhile were not seen) or a device or pool changed while pools
   * exist (any route may depend on one), so the caller can drop everything it cached. Resolves to a function that
   * stops watching.
   * Absent when the database cannot deliver notifications (the embedded one, which has a single writer).
   */
  watch?(onChange: (change: NodeChange) => void, onResync: (reconnected: boolean) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** String labels of a device (`{"country": "de"}`); a selector is the same shape. */
export type Labels = Record<string, string>;

/** One egress device on the tailnet: what a node shows of its device, and more. */
export interface DeviceRecord extends Omit<NodeRecord, 'keyHash'> {
  labels: Labels;
  enabled: boolean;
}

export interface NewDevice {
  name?: string | null;
  ip: string;
  ipv6?: string | null;
  port: number;
  protocol: DeviceProtocol;
  labels?: Labels;
  headscaleNodeId?: string | null;
  enabled?: boolean;
}

/** Absent fields stay as they are. */
export interface DevicePatch {
  name?: string | null;
  labels?: Labels;
  port?: number;
  protocol?: DeviceProtocol;
  enabled?: boolean;
}

export interface PoolRecord {
  id: number;
  name: string;
  /** null: the members are listed explicitly (`devices`). */
  selector: Labels | null;
  /** The explicitly listed devices; empty for a selector pool. */
  devices: number[];
  createdAt: Date;
  updatedAt: Date;
}

export interface PoolWithMembers extends PoolRecord {
  /** The devices in the pool now (explicit ones, or those the selector matches), enabled or not, by id. */
  members: DeviceRecord[];
}

/** Exactly one of devices and selector. */
export interface NewPool {
  name: string;
  devices?: number[];
  selector?: Labels;
}

/** Absent fields stay; giving devices makes the pool explicit, giving selector makes it a selector pool. */
export interface PoolPatch {
  name?: string;
  devices?: number[];
  selector?: Labels;
}

export type KeyTarget = { device: number } | { pool: number };

/** The calendar period a quota counts over, in UTC; `total` never resets. */
export type QuotaPeriod = 'day' | 'month' | 'total';

/**
 * What a key may use (issue 11); every field optional, an empty object is no limit at all. Stored as given (the API
 * validates), read on every key-cache miss with the key.
 */
export interface KeyLimits {
  /** Open tunnels and in-flight forwarded requests at once, on each gateway. */
  maxTunnels?: number;
  /** New tunnels (and forwarded requests) per second, a token bucket of `tunnelBurst` tokens. */
  tunnelsPerSecond?: number;
  /** The bucket's size: how many may start at once after a quiet spell (default: tunnelsPerSecond rounded up). */
  tunnelBurst?: number;
  /** Device to client, bytes per second, over all of the key's tunnels together. */
  bytesPerSecondDown?: number;
  /** Client to device, bytes per second, over all of the key's tunnels together. */
  bytesPerSecondUp?: number;
  /** Bytes up and down together per period. */
  quota?: { bytes: number; period: QuotaPeriod };
}

/** A credential. Only its SHA-256 is stored. */
export interface KeyRecord {
  id: number;
  name: string | null;
  keyHash: string;
  target: KeyTarget;
  expiresAt: Date | null;
  disabled: boolean;
  limits: KeyLimits;
  createdAt: Date;
  updatedAt: Date;
}

export interface NewKey {
  name?: string | null;
  keyHash: string;
  target: KeyTarget;
  expiresAt?: Date | null;
  disabled?: boolean;
  limits?: KeyLimits;
}

/** Absent fields stay; null clears name and expiresAt; limits replace the stored ones whole. */
export interface KeyPatch {
  name?: string | null;
  target?: KeyTarget;
  expiresAt?: Date | null;
  disabled?: boolean;
  limits?: KeyLimits;
}

/** What the data path needs for a key: the key's state and the devices it may egress through. */
export interface ResolvedKey {
  id: number;
  disabled: boolean;
  expiresAt: Date | null;
  target: KeyTarget;
  limits: KeyLimits;
  /** Enabled devices of the target (the device, or the pool's members), by id; empty when none. */
  devices: DeviceRecord[];
}

/** Keys, devices and pools as separate things; the management API and the pipeline build on this. */
export interface RegistryStore extends UsageStore {
  listDevices(): Promise<DeviceRecord[]>;
  getDevice(id: number): Promise<DeviceRecord | null>;
  createDevice(device: NewDevice): Promise<DeviceRecord>;
  /** Throws StoreError 'not-found' when there is no such device. */
  updateDevice(id: number, patch: DevicePatch): Promise<DeviceRecord>;
  /** Deletes the device, the keys that target it directly and its explicit pool memberships; null if there was none. */
  removeDevice(id: number): Promise<DeviceRecord | null>;

  /** Throws 'conflict' for a name in use, 'foreign-key' for an unknown device, 'invalid' unless exactly one of devices and selector. */
  createPool(pool: NewPool): Promise<PoolRecord>;
  listPools(): Promise<PoolRecord[]>;
  getPool(id: number): Promise<PoolWithMembers | null>;
  updatePool(id: number, patch: PoolPatch): Promise<PoolRecord>;
  /** Throws 'conflict' while keys target the pool; null if there was none. */
  removePool(id: number): Promise<PoolRecord | null>;

  /** Throws 'conflict' for a key hash in use, 'foreign-key' for an unknown target. */
  createKey(key: NewKey): Promise<KeyRecord>;
  listKeys(): Promise<KeyRecord[]>;
  getKey(id: number): Promise<KeyRecord | null>;
  updateKey(id: number, patch: KeyPatch): Promise<KeyRecord>;
  /** Replaces the key's secret (its hash); the old one stops resolving at once. */
  rotateKey(id: number, keyHash: string): Promise<KeyRecord>;
  removeKey(id: number): Promise<KeyRecord | null>;

  /** The key with this hash and its target's eligible devices, in one round trip; null for an unknown hash. */
  resolveKey(keyHash: string): Promise<ResolvedKey | null>;
}

/** What one gateway adds to one hourly bucket of one key and device (deviceId 0: no device was involved). */
export interface UsageDelta {
  /** The start of the UTC hour, ms since epoch. */
  hour: number;
  keyId: number;
  deviceId: number;
  bytesUp: number;
  bytesDown: number;
  tunnels: number;
  refused: number;
  failures: number;
}

export interface UsageCounts {
  bytesUp: number;
  bytesDown: number;
  tunnels: number;
  refused: number;
  failures: number;
}

/** One step of a usage series: `t` is the step's start (an hour, or a UTC day). */
export interface UsagePoint extends UsageCounts {
  t: Date;
}

export interface UsageTotal extends UsageCounts {
  id: number;
  /** The key's or device's name now; null when it has none or no longer exists. */
  name: string | null;
}

/** One key's or device's bytes (up + down) per step, for many of them at once (sparklines). */
export interface UsageBytesSeries {
  id: number;
  /** The key's or device's name now; null when it has none or no longer exists. */
  name: string | null;
  /** Non-empty steps only, in order: `t` is the step's start (ms since epoch). */
  steps: { t: number; bytes: number }[];
}

export type UsageStep = 'hour' | 'day';
export type UsageSubject = 'key' | 'device';

/** Usage accounting: every gateway adds to the same hourly buckets (see migration 5). */
export interface UsageStore {
  /** Adds each delta to its bucket, all in one statement; each (hour, key, device) at most once per call. */
  addUsage(deltas: readonly UsageDelta[]): Promise<void>;
  /** The non-empty steps of one key's or device's usage with from <= t < to, in order (from aligned to the step). */
  usageSeries(subject: UsageSubject, id: number, from: Date, to: Date, step: UsageStep): Promise<UsagePoint[]>;
  /** Totals per key or per device (device 0 left out) over from <= hour < to, most bytes first. */
  usageTotals(subject: UsageSubject, from: Date, to: Date): Promise<UsageTotal[]>;
  /**
   * Bytes per step of every existing key (or device), and of deleted ones with usage in from <= hour < to; device 0 left
   * out. One query, ordered by id.
   */
  usageBytesSeries(subject: UsageSubject, from: Date, to: Date, step: UsageStep): Promise<UsageBytesSeries[]>;
  /** Bytes up + down of each key since its time (ms since epoch, on the hour), in the order asked. */
  keyBytesSince(keys: readonly { keyId: number; since: number }[]): Promise<number[]>;
  /** Names of these keys (absent: no such key); for metrics labels. */
  keyNames(ids: readonly number[]): Promise<Map<number, string | null>>;
}
