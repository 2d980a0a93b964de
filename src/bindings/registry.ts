// Keys, devices and pools as operators change them through the management API. Every change runs in the binding
// service's order: the store first (the record every gateway reads), then this gateway's key cache (so the very next
// connection reads the new state), then the open tunnels that must not outlive the change. Headscale is asked first
// for a purge, so that its failure leaves everything as it was and the same call can be retried.
//
// Which changes cut open tunnels:
// - deleting a key, and disabling it (or moving its expiry into the past): a key an operator switched off must stop
//   carrying traffic now, not when its customer next reconnects;
// - deleting or disabling a device: the tunnels of the keys that target it directly;
// - rotating a key does not: the issue keeps its open tunnels, only the old secret stops opening new ones.
// Re-targeting a key, renaming, relabelling or re-porting a device and changing pools leave open tunnels alone, as
// re-registering a node does: they describe where the next connection goes.
import { randomBytes } from 'node:crypto';
import { hashKey, keyTag } from '../core/key.js';
import type { DeviceRegistrar } from '../headscale/types.js';
import type { Logger } from '../log.js';
import { StoreError } from '../store/errors.js';
import type { DevicePatch, DeviceRecord, KeyLimits, KeyRecord, KeyTarget, Labels, PoolRecord, RegistryStore } from '../store/types.js';
import { BindingError } from './errors.js';
import { deleteInHeadscale, purgeRegistrar, type KeyCache, type TunnelCutter } from './service.js';

export interface RegistryDeps {
  store: RegistryStore;
  keyCache: KeyCache;
  tunnels: TunnelCutter;
  /** Absent: no Headscale, so a device cannot be purged. */
  registrar?: DeviceRegistrar | undefined;
  log: Logger;
}

/** A key's target as a request names it: exactly one of the two. */
export interface TargetRequest {
  device?: number;
  pool?: number;
}

export interface NewKeyRequest extends TargetRequest {
  name?: string | null;
  /** The secret to use; absent: one is generated. The API checks it against the key rules (KEY in api/schemas.ts). */
  key?: string;
  expiresAt?: Date | null;
  limits?: LimitsChange | null;
}

export interface KeyUpdate extends TargetRequest {
  name?: string | null;
  expiresAt?: Date | null;
  disabled?: boolean;
  /** Merged into the key's limits: a field null removes that limit; null removes them all. */
  limits?: LimitsChange | null;
}

/** Limits as a request gives them (the API checked each value): null removes one. */
export type LimitsChange = { [K in keyof KeyLimits]?: KeyLimits[K] | null };

/** `change` applied to `current`; refuses a combination that means nothing, naming the field. */
export function mergeLimits(current: KeyLimits, change: LimitsChange | null): KeyLimits {
  const out: Record<string, unknown> = change === null ? {} : { ...current };
  if (change !== null) {
    for (const [name, value] of Object.entries(change)) {
      if (value === null) delete out[name];
      else if (value !== undefined) out[name] = value;
    }
  }
  const limits = out as KeyLimits;
  if (limits.tunnelBurst !== undefined && limits.tunnelsPerSecond === undefined) {
    throw new BindingError('invalid', 'limits.tunnelBurst: needs limits.tunnelsPerSecond (the burst is the size of its bucket)');
  }
  if (limits.tunnelBurst !== undefined && limits.tunnelsPerSecond !== undefined && limits.tunnelBurst < 1) {
    throw new BindingError('invalid', 'limits.tunnelBurst: must be at least 1');
  }
  return limits;
}

/** A key with its secret: only the answers to creation and rotation carry one. */
export interface KeyWithSecret {
  key: KeyRecord;
  secret: string;
}

export interface KeyRemoval {
  key: KeyRecord;
  tunnelsClosed: number;
}

export interface DeviceRemoval {
  device: DeviceRecord;
  tunnelsClosed: number;
  headscaleDeleted: boolean;
}

export interface PoolRequest {
  name?: string;
  devices?: number[];
  selector?: Labels;
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** The largest multiple of 62 that fits a byte: bytes from here up would make the first 8 characters likelier. */
const BASE62_LIMIT = 248;
export const GENERATED_KEY_LENGTH = 32;

/** A uniformly random base62 secret (about 190 bits for 32 characters), by rejection sampling of random bytes. */
export function generateSecret(length = GENERATED_KEY_LENGTH): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length + 8)) {
      if (byte >= BASE62_LIMIT) continue;
      out += BASE62[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

function targetOf(req: TargetRequest): KeyTarget | undefined {
  if (req.device !== undefined && req.pool !== undefined) throw new BindingError('invalid', 'device: give device or pool, not both');
  if (req.device !== undefined) return { device: req.device };
  if (req.pool !== undefined) return { pool: req.pool };
  return undefined;
}

function targetField(target: KeyTarget): string {
  return 'device' in target ? `device: no device ${target.device}` : `pool: no pool ${target.pool}`;
}

function noSuch(what: string, id: number): BindingError {
  return new BindingError('not-found', `id: no ${what} ${id}`);
}

export class RegistryService {
  private readonly log: Logger;
  /**
   * Hashes each key had before this gateway rotated it: the tunnel registry files a tunnel under the hash it was
   * opened with, and rotation keeps those tunnels, so deleting or disabling the key later must cut them too. A
   * rotation made by another gateway is not known here; its tunnels there are that gateway's.
   */
  private readonly rotatedHashes = new Map<number, string[]>();

  constructor(private readonly deps: RegistryDeps) {
    this.log = deps.log.child({ component: 'registry' });
  }

  // ---- Keys ----

  async createKey(req: NewKeyRequest): Promise<KeyWithSecret> {
    const target = targetOf(req);
    if (target === undefined) throw new BindingError('invalid', 'device: give device or pool (the key routes through one of them)');
    const limits = mergeLimits({}, req.limits ?? null);
    const secret = req.key ?? generateSecret();
    const keyHash = hashKey(secret);
    const key = await this.write(() => this.deps.store.createKey({ name: req.name ?? null, keyHash, target, expiresAt: req.expiresAt ?? null, limits }), {
      conflict: 'key: already in use by another key',
      foreignKey: () => targetField(target),
    });
    // A connection that tried this secret before may have left a negative entry.
    this.deps.keyCache.invalidate(keyHash);
    this.log.info({ keyId: key.id, keyPrefix: keyTag(keyHash), target, generated: req.key === undefined }, 'key created');
    return { key, secret };
  }

  async updateKey(id: number, req: KeyUpdate): Promise<KeyRecord> {
    const target = targetOf(req);
    let limits: KeyLimits | undefined;
    if (req.limits !== undefined) {
      // Merged here, not in SQL, so that a combination that means nothing is refused before anything is written.
      const current = await this.deps.store.getKey(id);
      if (current === null) throw noSuch('key', id);
      limits = mergeLimits(current.limits, req.limits);
    }
    const key = await this.write(
      () => this.deps.store.updateKey(id, { name: req.name, target, expiresAt: req.expiresAt, disabled: req.disabled, limits }),
      { notFound: noSuch('key', id).message, foreignKey: target === undefined ? undefined : () => targetField(target) },
    );
    // Each of these decides whether, where or how much the key routes; a name does not. (Invalidating a key with
    // open tunnels reads it again at once, so a new bandwidth cap reaches them.)
    if (target !== undefined || req.disabled !== undefined || req.expiresAt !== undefined || limits !== undefined) this.deps.keyCache.invalidate(key.keyHash);
    let tunnelsClosed = 0;
    if (key.disabled || (key.expiresAt !== null && key.expiresAt.getTime() <= Date.now())) tunnelsClosed = await this.cutKey(key);
    this.log.info({ keyId: id, keyPrefix: keyTag(key.keyHash), target: key.target, disabled: key.disabled, tunnelsClosed }, 'key updated');
    return key;
  }

  /** A new secret: the old one is refused from the next connection on; tunnels it opened stay open. */
  async rotateKey(id: number): Promise<KeyWithSecret> {
    const before = await this.deps.store.getKey(id);
    if (before === null) throw noSuch('key', id);
    const secret = generateSecret();
    const key = await this.write(() => this.deps.store.rotateKey(id, hashKey(secret)), { notFound: noSuch('key', id).message });
    this.deps.keyCache.invalidate(before.keyHash);
    this.deps.keyCache.invalidate(key.keyHash);
    const old = this.rotatedHashes.get(id);
    if (old === undefined) this.rotatedHashes.set(id, [before.keyHash]);
    else old.push(before.keyHash);
    this.log.info({ keyId: id, oldKeyPrefix: keyTag(before.keyHash), keyPrefix: keyTag(key.keyHash) }, 'key rotated');
    return { key, secret };
  }

  /** The key is refused from the next connection on, and its open tunnels are cut. */
  async removeKey(id: number): Promise<KeyRemoval> {
    const key = await this.deps.store.removeKey(id);
    if (key === null) throw noSuch('key', id);
    this.deps.keyCache.invalidate(key.keyHash);
    const tunnelsClosed = await this.cutKey(key);
    this.rotatedHashes.delete(id);
    this.log.info({ keyId: id, keyPrefix: keyTag(key.keyHash), tunnelsClosed }, 'key deleted');
    return { key, tunnelsClosed };
  }

  // ---- Devices ----

  async updateDevice(id: number, patch: DevicePatch): Promise<DeviceRecord> {
    // Read before the write: which keys target the device decides whose tunnels a disable cuts.
    const keys = patch.enabled === false ? await this.keysTargeting(id) : [];
    const device = await this.write(() => this.deps.store.updateDevice(id, patch), { notFound: noSuch('device', id).message });
    // Any key may route to the device, through a pool (a selector pool by its labels): devices change rarely, so
    // forgetting every cached route is cheaper than working out which.
    this.deps.keyCache.invalidateAll();
    const tunnelsClosed = device.enabled ? 0 : await this.cutKeys(keys);
    this.log.info({ deviceId: id, fields: Object.keys(patch), enabled: device.enabled, tunnelsClosed }, 'device updated');
    return device;
  }

  /** Deletes the device and the keys that target it directly; with purge, the node in Headscale first. */
  async removeDevice(id: number, purge: boolean): Promise<DeviceRemoval> {
    const device = await this.deps.store.getDevice(id);
    if (device === null) throw noSuch('device', id);
    // Headscale first: if it fails, nothing has changed yet and the same call can simply be retried.
    const headscaleDeleted = purge ? await deleteInHeadscale(purgeRegistrar(this.deps.registrar), device.headscaleNodeId) : false;
    const keys = await this.keysTargeting(id);
    const removed = await this.deps.store.removeDevice(id);
    if (removed === null) throw noSuch('device', id);
    this.deps.keyCache.invalidateAll();
    const tunnelsClosed = await this.cutKeys(keys);
    for (const key of keys) this.rotatedHashes.delete(key.id);
    this.log.info({ deviceId: id, keysDeleted: keys.length, tunnelsClosed, headscaleDeleted }, 'device deleted');
    return { device: removed, tunnelsClosed, headscaleDeleted };
  }

  // ---- Pools ----

  async createPool(req: PoolRequest & { name: string }): Promise<PoolRecord> {
    const pool = await this.write(() => this.deps.store.createPool(this.poolShape(req, true)), {
      conflict: `name: a pool named ${JSON.stringify(req.name)} exists`,
      foreignKey: () => this.missingDevices(req.devices),
    });
    // No key targets a new pool yet, so no cached route can depend on it.
    this.log.info({ poolId: pool.id, selector: pool.selector !== null }, 'pool created');
    return pool;
  }

  async updatePool(id: number, req: PoolRequest): Promise<PoolRecord> {
    const pool = await this.write(() => this.deps.store.updatePool(id, this.poolShape(req, false)), {
      notFound: noSuch('pool', id).message,
      conflict: `name: a pool named ${JSON.stringify(req.name)} exists`,
      foreignKey: () => this.missingDevices(req.devices),
    });
    // The keys that target the pool now route over other devices.
    this.deps.keyCache.invalidateAll();
    this.log.info({ poolId: id, fields: Object.keys(req) }, 'pool updated');
    return pool;
  }

  /** Refused ('conflict') while keys target the pool: deleting it would leave them routing nowhere. */
  async removePool(id: number): Promise<PoolRecord> {
    const pool = await this.write(() => this.deps.store.removePool(id), { conflict: null });
    if (pool === null) throw noSuch('pool', id);
    this.log.info({ poolId: id }, 'pool deleted');
    return pool;
  }

  // ---- Internals ----

  private poolShape<T extends PoolRequest>(req: T, creating: boolean): T {
    if (req.devices !== undefined && req.selector !== undefined) throw new BindingError('invalid', 'selector: give devices or selector, not both');
    if (creating && req.devices === undefined && req.selector === undefined) {
      throw new BindingError('invalid', 'devices: give devices (a list of device ids) or selector (labels to match)');
    }
    return req;
  }

  /** Run when the store refused a pool's devices: names the ids that do not exist. */
  private async missingDevices(devices: number[] | undefined): Promise<string> {
    const known = new Set((await this.deps.store.listDevices()).map((d) => d.id));
    const missing = (devices ?? []).filter((id) => !known.has(id));
    return `devices: no device ${missing.length > 0 ? missing.join(', ') : (devices ?? []).join(', ')}`;
  }

  private async keysTargeting(deviceId: number): Promise<KeyRecord[]> {
    return (await this.deps.store.listKeys()).filter((k) => 'device' in k.target && k.target.device === deviceId);
  }

  /**
   * Cuts the tunnels of keys that target a device directly. Keys that reach it through a pool keep theirs: the
   * tunnel registry files tunnels by key, not by the device they went out through, so cutting a pool key would cut
   * its tunnels on every other member too. Those go when the pipeline counts tunnels per device.
   */
  private async cutKeys(keys: KeyRecord[]): Promise<number> {
    let n = 0;
    for (const key of keys) n += await this.cutKey(key);
    return n;
  }

  private async cutKey(key: KeyRecord): Promise<number> {
    let n = await this.deps.tunnels.closeKey(key.keyHash);
    for (const old of this.rotatedHashes.get(key.id) ?? []) n += await this.deps.tunnels.closeKey(old);
    return n;
  }

  /**
   * Runs a store write, turning its refusals into domain errors whose message names the request field at fault.
   * `conflict: null` keeps the store's own message (it says what is in the way).
   */
  private async write<T>(run: () => Promise<T>, messages: { notFound?: string; conflict?: string | null; foreignKey?: (() => string | Promise<string>) | undefined }): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      switch (err.kind) {
        case 'not-found':
          throw new BindingError('not-found', messages.notFound ?? err.message, { cause: err });
        case 'conflict':
          throw new BindingError('conflict', messages.conflict ?? `id: ${err.message}`, { cause: err });
        case 'foreign-key':
          throw new BindingError('unknown-reference', (await messages.foreignKey?.()) ?? err.message, { cause: err });
        case 'invalid':
          throw new BindingError('invalid', err.message, { cause: err });
      }
    }
  }
}
