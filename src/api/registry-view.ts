// Devices, pools and keys as the management API shows them (the Device, Pool, PoolWithMembers and Key schemas).
import { keyTag } from '../core/key.js';
import type { DeviceRecord, KeyRecord, PoolRecord, PoolWithMembers } from '../store/types.js';
import type { TailnetView } from '../tailnet/types.js';
import type { DeviceStatusFeed } from '../tunnel/device-status.js';
import { periodBounds, type QuotaLedger } from '../tunnel/quota.js';

type Health = { state: 'up' | 'down' | 'unknown'; reason: string | null; since: string | null };

/** Without a device board (an API alone, as some tests run it): what is known now, with no history. */
function healthNow(device: DeviceRecord, online: boolean | undefined): Health {
  if (!device.enabled) return { state: 'down', reason: 'disabled', since: device.updatedAt.toISOString() };
  if (online === false) return { state: 'down', reason: 'offline', since: null };
  if (online === true) return { state: 'up', reason: 'online', since: null };
  return { state: 'unknown', reason: 'no-status', since: null };
}

/**
 * The device's live state on this gateway: health and open tunnels from the device board, which the tailnet and every
 * connection through the device keep current. Reading it also (re)tracks the device, so a device that no key has used
 * yet is followed from now on.
 */
function live(device: DeviceRecord, online: boolean | undefined, status: DeviceStatusFeed | undefined): { health: Health; openTunnels: number } {
  if (status === undefined) return { health: healthNow(device, online), openTunnels: 0 };
  status.track({ id: device.id, name: device.name ?? String(device.id), ip: device.ip });
  const v = status.health(device.id);
  const health: Health = device.enabled
    ? { state: v.health, reason: v.reason, since: new Date(v.since).toISOString() }
    : { state: 'down', reason: 'disabled', since: device.updatedAt.toISOString() };
  return { health, openTunnels: v.openTunnels };
}

export function deviceView(device: DeviceRecord, tailnet: TailnetView | undefined, status?: DeviceStatusFeed) {
  const online = tailnet?.peerOnline(device.ip);
  const link = tailnet?.peerLink?.(device.ip);
  const { health, openTunnels } = live(device, online, status);
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
    health,
    openTunnels,
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

export function poolWithMembersView(pool: PoolWithMembers, tailnet: TailnetView | undefined, status?: DeviceStatusFeed) {
  return { ...poolView(pool), members: pool.members.map((d) => deviceView(d, tailnet, status)) };
}

/**
 * Never the secret: only the prefix of its hash, as logs show it. With a quota, what the ledger says the key used in
 * the current period (this gateway's view: the database's total plus its own unflushed bytes).
 */
export function keyView(key: KeyRecord, ledger?: QuotaLedger) {
  const view = {
    id: key.id,
    name: key.name,
    keyPrefix: keyTag(key.keyHash),
    target: key.target,
    expiresAt: key.expiresAt === null ? null : key.expiresAt.toISOString(),
    disabled: key.disabled,
    limits: key.limits,
    createdAt: key.createdAt.toISOString(),
  };
  const q = key.limits.quota;
  if (q === undefined) return view;
  const bounds = periodBounds(q.period, Date.now());
  ledger?.track(key.id, bounds.start);
  const used = ledger?.usedSince(key.id, bounds.start) ?? 0;
  return {
    ...view,
    quota: {
      used,
      limit: q.bytes,
      periodStart: new Date(bounds.start).toISOString(),
      resetsAt: bounds.resetsAt === null ? null : new Date(bounds.resetsAt).toISOString(),
      exhausted: used >= q.bytes,
    },
  };
}
