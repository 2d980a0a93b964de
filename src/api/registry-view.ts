// Devices, pools and keys as the management API shows them (the Device, Pool, PoolWithMembers and Key schemas).
import { keyTag } from '../core/key.js';
import type { DeviceRecord, KeyRecord, PoolRecord, PoolWithMembers } from '../store/types.js';
import type { TailnetView } from '../tailnet/types.js';

type Health = { state: 'up' | 'down' | 'unknown'; reason: string | null; since: string | null };

/**
 * Until the pipeline keeps a health model (breaker included), health is what is known now: disabled, or the
 * tailnet's online flag. `since` stays null: nothing records when a device changed state.
 */
function health(device: DeviceRecord, online: boolean | undefined): Health {
  if (!device.enabled) return { state: 'down', reason: 'disabled', since: null };
  if (online === false) return { state: 'down', reason: 'offline', since: null };
  if (online === true) return { state: 'up', reason: null, since: null };
  return { state: 'unknown', reason: null, since: null };
}

export function deviceView(device: DeviceRecord, tailnet: TailnetView | undefined) {
  const online = tailnet?.peerOnline(device.ip);
  const link = tailnet?.peerLink?.(device.ip);
  return {
    id: device.id,
    name: device.name,
    ip: device.ip,
    ipv6: device.ipv6,
    port: device.port,
    protocol: device.protocol,
    labels: device.labels,
    headscaleNodeId: device.headscaleNodeId,
    enabled: device.enabled,
    createdAt: device.createdAt.toISOString(),
    updatedAt: device.updatedAt.toISOString(),
    online: online ?? null,
    health: health(device, online),
    // The tunnel registry counts tunnels by key, not by device; 0 until the pipeline counts them per device.
    openTunnels: 0,
    lastHandshake: link?.lastHandshake ?? null,
    relayed: link?.relayed ?? null,
  };
}

export function poolView(pool: PoolRecord) {
  return {
    id: pool.id,
    name: pool.name,
    devices: pool.devices,
    selector: pool.selector,
    createdAt: pool.createdAt.toISOString(),
    updatedAt: pool.updatedAt.toISOString(),
  };
}

export function poolWithMembersView(pool: PoolWithMembers, tailnet: TailnetView | undefined) {
  return { ...poolView(pool), members: pool.members.map((d) => deviceView(d, tailnet)) };
}

/** Never the secret: only the prefix of its hash, as logs show it. */
export function keyView(key: KeyRecord) {
  return {
    id: key.id,
    name: key.name,
    keyPrefix: keyTag(key.keyHash),
    target: key.target,
    expiresAt: key.expiresAt === null ? null : key.expiresAt.toISOString(),
    disabled: key.disabled,
    createdAt: key.createdAt.toISOString(),
  };
}
