// The one place a key's binding to a device changes: registering it (by address, or by approving in Headscale the
// device that holds the key as its registration key, the original system's contract), re-binding it, revoking and
// purging it, and applying the changes other gateways on the same database announce.
//
// Every change runs the same sequence: the store first (the record every gateway reads), then this gateway's key
// cache (so the very next connection reads the new state), then, when the key no longer routes anywhere, the key's
// open tunnels. Headscale is asked before the store when its answer decides what is written (approval), or when its
// failure must leave everything as it was so the same call can be retried (purge).
import { canonicalAddress } from '../core/ip.js';
import type { DeviceProtocol } from '../core/route.js';
import { RegistrarError, type DeviceRegistrar } from '../headscale/types.js';
import { hashKey, keyTag } from '../core/key.js';
import { type Logger } from '../log.js';
import type { NodeBinding, NodeChange, NodeRecord, NodeStore } from '../store/types.js';
import { BindingError } from './errors.js';

/** What remembers key routes in memory (the key resolver's cache). */
export interface KeyCache {
  invalidate(keyHash: string): void;
  invalidateAll(): void;
  /** The key's route as the database has it now (null: it routes nowhere); rejects when the database cannot answer. */
  resolveHash(keyHash: string): Promise<object | null>;
}

/** What holds the open tunnels of each key (the tunnel registry). */
export interface TunnelCutter {
  /**
   * Destroys every open tunnel of the key; returns how many there were (a promise when other processes hold tunnels
   * too: the count is theirs together, once each has cut its own).
   */
  closeKey(keyHash: string): number | Promise<number>;
  /** closeKey() on a change notification; this gateway's own revocation of the key, if any, still counts them. */
  closeKeyOnChange(keyHash: string): number;
  /** Hashes of the keys with tunnels open here. */
  openKeys(): string[];
}

/** The device addresses that may be registered. */
export interface AddressPolicy {
  allows(ip: string): boolean;
  /** The allowed ranges, for messages. */
  toString(): string;
}

export interface BindingDeps {
  store: NodeStore;
  keyCache: KeyCache;
  tunnels: TunnelCutter;
  allowList: AddressPolicy;
  /** Port and protocol of a new binding whose registration names none. */
  deviceDefaults: { port: number; protocol: DeviceProtocol };
  /** Absent: no Headscale, so every registration needs an address and nothing can be purged. */
  registrar?: DeviceRegistrar | undefined;
  /**
   * Gets this gateway's path to a device ready for its first connection (the supervised tailscaled's warm-up). A key
   * approved through another gateway was warmed up there only; without this, the first connection here finds the
   * device missing or offline in this gateway's netmap and is refused.
   */
  warmUp?: ((ip: string) => void) | undefined;
  /**
   * The change feed reconnected (notifications may have been lost): what else holds this gateway's tunnels (its worker
   * processes) reads its keys with open tunnels again, as resync() does here.
   */
  onReconnected?: (() => void) | undefined;
  log: Logger;
}

export interface RegisterRequest {
  key: string;
  /** The device's tailnet address; absent: approve the device holding the key in Headscale. */
  ip?: string;
  port?: number;
  protocol?: DeviceProtocol;
  name?: string;
}

export type BindingSource = 'address' | 'Headscale approval' | 'existing Headscale approval';

export interface Registration {
  node: NodeRecord;
  /** False when the key was bound already and this re-bound it. */
  created: boolean;
  via: BindingSource;
}

export interface Revocation {
  /** The binding as it was before it was removed. */
  node: NodeRecord;
  tunnelsClosed: number;
  headscaleDeleted: boolean;
}

/** A Headscale failure, keeping Headscale's own reason and naming the input it concerns. */
function registrarFailure(field: string, err: RegistrarError): BindingError {
  const message = err.message.startsWith(`${field}:`) ? err.message : `${field}: ${err.message}`;
  return new BindingError('registrar', message, { registrarFailure: err.kind, cause: err });
}

/** The registrar a purge needs, or the refusal when there is none. */
export function purgeRegistrar(registrar: DeviceRegistrar | undefined): DeviceRegistrar {
  if (registrar === undefined) throw new BindingError('purge-unavailable', 'purge: Headscale is not configured (HEADSCALE_URL)');
  return registrar;
}

/** Deletes the node in Headscale for a purge; true when it was deleted, false when there was none to delete. */
export async function deleteInHeadscale(registrar: DeviceRegistrar, headscaleNodeId: string | null): Promise<boolean> {
  if (headscaleNodeId === null) return false;
  try {
    await registrar.deleteNode(headscaleNodeId);
    return true;
  } catch (err) {
    // A node already gone from Headscale is what purge wants; anything else stops before the registry changes.
    if (!(err instanceof RegistrarError)) throw err;
    if (err.kind !== 'not-found') throw registrarFailure('purge', err);
    return false;
  }
}

function notFound(id: number): BindingError {
  return new BindingError('not-found', `id: no node ${id}`);
}

export class BindingService {
  private readonly log: Logger;
  private stopWatching: (() => Promise<void>) | undefined;

  constructor(private readonly deps: BindingDeps) {
    this.log = deps.log.child({ component: 'bindings' });
  }

  /** Binds the key, or re-binds it if it is bound already. Tunnels open on an old binding stay open. */
  async register(req: RegisterRequest): Promise<Registration> {
    const keyHash = hashKey(req.key);
    const existing = await this.deps.store.findByKeyHash(keyHash);
    // A device re-registering on every boot must not reset what an operator set: unspecified fields keep the
    // stored value, and only a new binding takes the configured defaults.
    const port = req.port ?? existing?.port ?? this.deps.deviceDefaults.port;
    const protocol = req.protocol ?? existing?.protocol ?? this.deps.deviceDefaults.protocol;

    let binding: NodeBinding;
    let via: BindingSource;
    if (req.ip !== undefined) {
      const ip = this.allowedAddress(req.ip);
      const sameDevice = existing !== null && existing.ip === ip;
      // What we know about the old device does not describe a new one.
      binding = { keyHash, ip, port, protocol, name: req.name, ipv6: sameDevice ? undefined : null, headscaleNodeId: sameDevice ? undefined : null };
      via = 'address';
    } else if (existing !== null && existing.headscaleNodeId !== null) {
      // Already approved: Headscale has consumed the registration key, and a tailnet address is fixed for the
      // node's lifetime, so answer from the registry (idempotent, and independent of Headscale being up).
      binding = { keyHash, ip: existing.ip, port, protocol, name: req.name };
      via = 'existing Headscale approval';
    } else {
      const registrar = this.deps.registrar;
      if (registrar === undefined) throw new BindingError('address-required', 'ip: required (Headscale approval is not configured)');
      let device;
      try {
        device = await registrar.approve(req.key);
      } catch (err) {
        throw err instanceof RegistrarError ? registrarFailure('key', err) : err;
      }
      const ip = this.allowedAddress(device.ipv4, "the device's address in Headscale");
      binding = {
        keyHash,
        ip,
        ipv6: device.ipv6 === null ? null : (canonicalAddress(device.ipv6) ?? null),
        port,
        protocol,
        name: req.name ?? device.name,
        headscaleNodeId: device.headscaleNodeId,
      };
      via = 'Headscale approval';
    }

    const { node, created } = await this.deps.store.upsert(binding);
    this.deps.keyCache.invalidate(keyHash);
    this.log.info(
      { keyPrefix: keyTag(keyHash), nodeId: node.id, ip: node.ip, port: node.port, protocol: node.protocol, created, via },
      created ? 'key registered' : 'key binding updated',
    );
    return { node, created, via };
  }

  /** Removes the binding: the key is refused from the next connection on, and its open tunnels are cut. */
  async revoke(id: number): Promise<Revocation> {
    const removed = await this.deps.store.remove(id);
    if (removed === null) throw notFound(id);
    return await this.removed(removed, false);
  }

  /** revoke(), after deleting the node in Headscale too. */
  async purge(id: number): Promise<Revocation> {
    const registrar = purgeRegistrar(this.deps.registrar);
    const node = await this.deps.store.get(id);
    if (node === null) throw notFound(id);

    // Headscale first: if it fails, nothing has changed yet and the same purge can simply be retried.
    const headscaleDeleted = await deleteInHeadscale(registrar, node.headscaleNodeId);

    const removed = await this.deps.store.remove(id);
    if (removed === null) throw notFound(id);
    return await this.removed(removed, headscaleDeleted);
  }

  /**
   * A change committed to the shared store, by another gateway (or by this one, which is then already applied):
   * forget the cached route, and cut a revoked key's tunnels.
   */
  applyChange(change: NodeChange): void {
    this.deps.keyCache.invalidate(change.keyHash);
    if (change.op === 'delete') this.deps.tunnels.closeKeyOnChange(change.keyHash);
    else if (change.op === 'insert' && this.deps.warmUp !== undefined) void this.warmUpNewKey(change.keyHash, this.deps.warmUp);
  }

  /** Best effort: a failed lookup leaves the device's first connection to find its own way. */
  private async warmUpNewKey(keyHash: string, warmUp: (ip: string) => void): Promise<void> {
    try {
      const node = await this.deps.store.findByKeyHash(keyHash);
      if (node !== null) warmUp(node.ip);
    } catch (err) {
      this.log.debug({ keyPrefix: keyTag(keyHash), err: (err as Error).message }, 'cannot look up a new key to warm up its device');
    }
  }

  /**
   * Notifications may have been missed: forget every cached route. After the listener reconnected (an outage, say),
   * a revocation committed meanwhile by another gateway was not heard, so every key with tunnels open here is read
   * again and the tunnels of one that no longer routes are cut, as its notification would have done.
   */
  resync(reconnected = false): void {
    this.deps.keyCache.invalidateAll();
    if (!reconnected) return;
    this.deps.onReconnected?.();
    for (const keyHash of this.deps.tunnels.openKeys()) {
      this.deps.keyCache.resolveHash(keyHash).then(
        (route) => {
          if (route !== null) return;
          const n = this.deps.tunnels.closeKeyOnChange(keyHash);
          if (n > 0) this.log.info({ keyPrefix: keyTag(keyHash), tunnelsClosed: n }, 'key revoked while change notifications were not arriving; closed its tunnels');
        },
        // The database failed again: the next reconnection reads it again.
        () => {},
      );
    }
  }

  /** Applies the store's change notifications until close(); a no-op for a store that has none (the embedded one). */
  async followChanges(): Promise<void> {
    if (this.stopWatching !== undefined || this.deps.store.watch === undefined) return;
    this.stopWatching = await this.deps.store.watch(
      (change) => this.applyChange(change),
      (reconnected) => this.resync(reconnected),
    );
  }

  async close(): Promise<void> {
    const stop = this.stopWatching;
    this.stopWatching = undefined;
    await stop?.();
  }

  private async removed(node: NodeRecord, headscaleDeleted: boolean): Promise<Revocation> {
    this.deps.keyCache.invalidate(node.keyHash);
    const tunnelsClosed = await this.deps.tunnels.closeKey(node.keyHash);
    this.log.info({ keyPrefix: keyTag(node.keyHash), nodeId: node.id, tunnelsClosed, headscaleDeleted }, 'key revoked');
    return { node, tunnelsClosed, headscaleDeleted };
  }

  private allowedAddress(raw: string, source?: string): string {
    const ip = canonicalAddress(raw);
    if (ip === null) throw new BindingError('invalid-address', `ip: ${JSON.stringify(raw)} is not an IP address`);
    if (!this.deps.allowList.allows(ip)) {
      throw new BindingError(
        'address-not-allowed',
        `ip: ${ip}${ip === raw ? '' : ` (written ${JSON.stringify(raw)})`}${source === undefined ? '' : ` (${source})`} is outside the allowed device ranges (${this.deps.allowList.toString()}, TAILGATE_ALLOW_CIDRS)`,
      );
    }
    return ip;
  }
}
