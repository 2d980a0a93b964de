// The registry in SQL through `postgres` (porsager). One implementation for both a real server and the
// embedded PGlite, which is reached through the same wire protocol.
import { randomBytes } from 'node:crypto';
import type { Sql, TransactionSql } from 'postgres';
import type { DeviceProtocol } from '../core/route.js';
import type { Logger } from '../log.js';
import { StoreError, toStoreError } from './errors.js';
import { WriteGroup } from './write-group.js';
import type {
  DevicePatch,
  DeviceRecord,
  KeyLimits,
  KeyPatch,
  KeyRecord,
  KeyTarget,
  Labels,
  NewDevice,
  NewKey,
  NewPool,
  NodeBinding,
  NodeChange,
  NodeRecord,
  NodeStore,
  PoolPatch,
  PoolRecord,
  PoolWithMembers,
  RegistryStore,
  ResolvedKey,
  UsageDelta,
  UsagePoint,
  UsageStep,
  UsageSubject,
  UsageBytesSeries,
  UsageTotal,
} from './types.js';

/** The channel the change triggers notify on (migrations 2 and 3). */
export const NODES_CHANNEL = 'tailgate_nodes';
const CHANGE_OPS: Record<string, NodeChange['op'] | undefined> = { INSERT: 'insert', UPDATE: 'update', DELETE: 'delete' };
const KEY_HASH = /^[0-9a-f]{64}$/;

interface NodeRow {
  id: number;
  name: string | null;
  ip: string;
  ipv6: string | null;
  port: number;
  protocol: DeviceProtocol;
  key_hash: string;
  headscale_node_id: string | null;
  created_at: Date;
  updated_at: Date;
}

/** What a node and a device show alike: the device's columns (and, for a node, the key's id and times). */
function sharedFields(row: Omit<NodeRow, 'key_hash'>): Omit<NodeRecord, 'keyHash'> {
  return {
    id: row.id,
    name: row.name,
    ip: row.ip,
    ipv6: row.ipv6,
    port: row.port,
    protocol: row.protocol,
    headscaleNodeId: row.headscale_node_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toRecord(row: NodeRow): NodeRecord {
  return { ...sharedFields(row), keyHash: row.key_hash };
}

// The legacy "node": a key that targets one device, with the device's fields and the key's id (the `nodes` view).
const NODE_COLUMNS = `k.id, d.name, d.ip, d.ipv6, d.port, d.protocol, k.key_hash, d.headscale_node_id, k.created_at,
  greatest(k.updated_at, d.updated_at) AS updated_at`;
const NODE_FROM = 'keys k JOIN devices d ON d.id = k.target_device_id';

const DEVICE_COLUMNS = 'd.id, d.name, d.ip, d.ipv6, d.port, d.protocol, d.labels, d.headscale_node_id, d.enabled, d.created_at, d.updated_at';

interface DeviceRow extends Omit<NodeRow, 'key_hash'> {
  labels: Labels;
  enabled: boolean;
}

function toDevice(row: DeviceRow): DeviceRecord {
  return { ...sharedFields(row), labels: row.labels, enabled: row.enabled };
}

// Members of pool p (in scope as `p`): the explicit list, or every device whose labels contain the selector.
const POOL_MEMBERS = `devices d WHERE ((p.selector IS NULL AND d.id IN (SELECT pd.device_id FROM pool_devices pd WHERE pd.pool_id = p.id))
  OR (p.selector IS NOT NULL AND d.labels @> p.selector))`;

const POOL_COLUMNS = `p.id, p.name, p.selector, p.created_at, p.updated_at,
  coalesce((SELECT array_agg(pd.device_id ORDER BY pd.device_id) FROM pool_devices pd WHERE pd.pool_id = p.id), '{}') AS devices`;

interface PoolRow {
  id: number;
  name: string;
  selector: Labels | null;
  devices: number[];
  created_at: Date;
  updated_at: Date;
}

function toPool(row: PoolRow): PoolRecord {
  return { id: row.id, name: row.name, selector: row.selector, devices: row.devices, createdAt: row.created_at, updatedAt: row.updated_at };
}

const KEY_COLUMNS = 'k.id, k.name, k.key_hash, k.target_device_id, k.target_pool_id, k.expires_at, k.disabled, k.limits, k.created_at, k.updated_at';

interface KeyRow {
  id: number;
  name: string | null;
  key_hash: string;
  target_device_id: number | null;
  target_pool_id: number | null;
  expires_at: Date | null;
  disabled: boolean;
  limits: KeyLimits;
  created_at: Date;
  updated_at: Date;
}

/** The key a one-row RETURNING gave back, or null when no row matched. */
function keyOrNull(rows: readonly object[]): KeyRecord | null {
  const row = rows[0] as KeyRow | undefined;
  return row === undefined ? null : toKey(row);
}

function toTarget(deviceId: number | null, poolId: number | null): KeyTarget {
  return deviceId !== null ? { device: deviceId } : { pool: poolId! };
}

function toKey(row: KeyRow): KeyRecord {
  return {
    id: row.id,
    name: row.name,
    keyHash: row.key_hash,
    target: toTarget(row.target_device_id, row.target_pool_id),
    expiresAt: row.expires_at,
    disabled: row.disabled,
    limits: row.limits,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function targetColumns(target: KeyTarget): [number | null, number | null] {
  return 'device' in target ? [target.device, null] : [null, target.pool];
}

// First half of the two-int advisory lock key that serialises upserts of one key hash (the second is its hashtext);
// "tg" in ASCII.
const UPSERT_LOCK_CLASS = 0x7467;

function notFound(what: string, id: number): StoreError {
  return new StoreError('not-found', `no ${what} ${id}`);
}

/** notFound() thrown after a grouped write: thrown inside one, it would roll back the writes grouped with it. */
function throwNotFound(what: string, id: number): never {
  throw notFound(what, id);
}

export class SqlNodeStore implements NodeStore, RegistryStore {
  /** Key writes (the ones that notify), committed together when they arrive together (write-group.ts). */
  private readonly keyWrites: WriteGroup;

  /**
   * @param sql the client; closed by close()
   * @param release runs after the client is closed (the embedded database's shutdown)
   */
  constructor(
    protected readonly sql: Sql,
    private readonly release: () => Promise<void> = async () => {},
  ) {
    this.keyWrites = new WriteGroup(sql);
  }

  /** Throws a refused write as a StoreError, so no caller has to know SQL error codes. */
  private async write<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw toStoreError(err);
    }
  }

  // ---- The legacy view (NodeStore): a node is a key that targets a single device. ----

  /** Only a key that may route now: enabled, unexpired, targeting an enabled device. Pool keys are not nodes. */
  async findByKeyHash(keyHash: string): Promise<NodeRecord | null> {
    const [row] = await this.sql.unsafe<NodeRow[]>(
      `SELECT ${NODE_COLUMNS} FROM ${NODE_FROM}
       WHERE k.key_hash = $1 AND NOT k.disabled AND (k.expires_at IS NULL OR k.expires_at > now()) AND d.enabled`,
      [keyHash],
      // Every key-cache miss runs this: parse and plan it once per connection, as tagged queries are.
      { prepare: true },
    );
    return row === undefined ? null : toRecord(row);
  }

  /**
   * A known key that targets a device updates that device; an unknown key creates a device and a key targeting it.
   * ip, port and protocol are always replaced. name, ipv6 and headscaleNodeId follow "undefined keeps, null
   * clears": a re-registration that does not mention them leaves what is stored alone. A key that targets a pool
   * is refused ('conflict'): registering must not turn an operator's pool key into a one-device key.
   */
  async upsert(b: NodeBinding): Promise<{ node: NodeRecord; created: boolean }> {
    return this.write(() =>
      this.keyWrites.transaction(async (tx) => {
        // Two registrations of one new key at once would otherwise both create a device.
        await tx`SELECT pg_advisory_xact_lock(${UPSERT_LOCK_CLASS}::integer, hashtext(${b.keyHash}))`;
        const [key] = await tx<{ id: number; target_device_id: number | null }[]>`
          SELECT id, target_device_id FROM keys WHERE key_hash = ${b.keyHash} FOR UPDATE`;
        let id: number;
        if (key === undefined) {
          const [device] = await tx<{ id: number }[]>`
            INSERT INTO devices (name, ip, ipv6, port, protocol, headscale_node_id)
            VALUES (${b.name ?? null}, ${b.ip}, ${b.ipv6 ?? null}, ${b.port}, ${b.protocol}, ${b.headscaleNodeId ?? null})
            RETURNING id`;
          const [created] = await tx<{ id: number }[]>`
            INSERT INTO keys (key_hash, target_device_id) VALUES (${b.keyHash}, ${device!.id}) RETURNING id`;
          id = created!.id;
        } else if (key.target_device_id === null) {
          throw new StoreError('conflict', `key ${key.id} targets a pool, not a device`);
        } else {
          id = key.id;
          await tx`
            UPDATE devices SET
              ip = ${b.ip},
              port = ${b.port},
              protocol = ${b.protocol},
              ipv6 = CASE WHEN ${b.ipv6 === undefined}::boolean THEN ipv6 ELSE ${b.ipv6 ?? null}::text END,
              name = CASE WHEN ${b.name === undefined}::boolean THEN name ELSE ${b.name ?? null}::text END,
              headscale_node_id = CASE WHEN ${b.headscaleNodeId === undefined}::boolean THEN headscale_node_id
                ELSE ${b.headscaleNodeId ?? null}::text END,
              updated_at = now()
            WHERE id = ${key.target_device_id}`;
          await tx`UPDATE keys SET updated_at = now() WHERE id = ${id}`;
        }
        const [row] = await tx.unsafe<NodeRow[]>(`SELECT ${NODE_COLUMNS} FROM ${NODE_FROM} WHERE k.id = $1`, [id]);
        if (row === undefined) throw new Error('upsert left no node');
        return { node: toRecord(row), created: key === undefined };
      }),
    );
  }

  async list(): Promise<NodeRecord[]> {
    const rows = await this.sql.unsafe<NodeRow[]>(`SELECT ${NODE_COLUMNS} FROM ${NODE_FROM} ORDER BY k.id`);
    return rows.map(toRecord);
  }

  async get(id: number): Promise<NodeRecord | null> {
    const [row] = await this.sql.unsafe<NodeRow[]>(`SELECT ${NODE_COLUMNS} FROM ${NODE_FROM} WHERE k.id = $1`, [id]);
    return row === undefined ? null : toRecord(row);
  }

  /** Deletes the key, and its device too when nothing else (another key, an explicit pool) still uses it. */
  async remove(id: number): Promise<NodeRecord | null> {
    return this.write(() =>
      this.keyWrites.transaction(async (tx) => {
        const [row] = await tx.unsafe<(NodeRow & { device_id: number })[]>(
          `SELECT ${NODE_COLUMNS}, d.id AS device_id FROM ${NODE_FROM} WHERE k.id = $1 FOR UPDATE OF k`,
          [id],
        );
        if (row === undefined) return null;
        await tx`DELETE FROM keys WHERE id = ${id}`;
        await tx`
          DELETE FROM devices d WHERE d.id = ${row.device_id}
            AND NOT EXISTS (SELECT 1 FROM keys k WHERE k.target_device_id = d.id)
            AND NOT EXISTS (SELECT 1 FROM pool_devices pd WHERE pd.device_id = d.id)`;
        return toRecord(row);
      }),
    );
  }

  // ---- Devices ----

  async listDevices(): Promise<DeviceRecord[]> {
    const rows = await this.sql.unsafe<DeviceRow[]>(`SELECT ${DEVICE_COLUMNS} FROM devices d ORDER BY d.id`);
    return rows.map(toDevice);
  }

  async getDevice(id: number): Promise<DeviceRecord | null> {
    const [row] = await this.sql.unsafe<DeviceRow[]>(`SELECT ${DEVICE_COLUMNS} FROM devices d WHERE d.id = $1`, [id]);
    return row === undefined ? null : toDevice(row);
  }

  async createDevice(n: NewDevice): Promise<DeviceRecord> {
    return this.write(async () => {
      const [row] = await this.sql.unsafe<DeviceRow[]>(
        `INSERT INTO devices AS d (name, ip, ipv6, port, protocol, labels, headscale_node_id, enabled)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8) RETURNING ${DEVICE_COLUMNS}`,
        [n.name ?? null, n.ip, n.ipv6 ?? null, n.port, n.protocol, n.labels ?? {}, n.headscaleNodeId ?? null, n.enabled ?? true],
      );
      return toDevice(row!);
    });
  }

  async updateDevice(id: number, p: DevicePatch): Promise<DeviceRecord> {
    return this.write(async () => {
      const [row] = await this.sql.unsafe<DeviceRow[]>(
        `UPDATE devices AS d SET
           name = CASE WHEN $2 THEN $3::text ELSE d.name END,
           labels = coalesce($4::jsonb, d.labels),
           port = coalesce($5::integer, d.port),
           protocol = coalesce($6::text, d.protocol),
           enabled = coalesce($7::boolean, d.enabled),
           updated_at = now()
         WHERE d.id = $1 RETURNING ${DEVICE_COLUMNS}`,
        [id, p.name !== undefined, p.name ?? null, p.labels ?? null, p.port ?? null, p.protocol ?? null, p.enabled ?? null],
      );
      if (row === undefined) throw notFound('device', id);
      return toDevice(row);
    });
  }

  async removeDevice(id: number): Promise<DeviceRecord | null> {
    return this.write(async () => {
      const [row] = await this.sql.unsafe<DeviceRow[]>(`DELETE FROM devices AS d WHERE d.id = $1 RETURNING ${DEVICE_COLUMNS}`, [id]);
      return row === undefined ? null : toDevice(row);
    });
  }

  // ---- Pools ----

  async createPool(n: NewPool): Promise<PoolRecord> {
    const members = explicitOrSelector(n.devices, n.selector, true);
    return this.write(() =>
      this.sql.begin(async (tx) => {
        const [pool] = await tx<{ id: number }[]>`
          INSERT INTO pools (name, selector) VALUES (${n.name}, ${members.selector === null ? null : tx.json(members.selector)}::jsonb)
          RETURNING id`;
        if (members.devices !== null) await setPoolDevices(tx, pool!.id, members.devices);
        return (await readPool(tx, pool!.id))!;
      }),
    );
  }

  async listPools(): Promise<PoolRecord[]> {
    const rows = await this.sql.unsafe<PoolRow[]>(`SELECT ${POOL_COLUMNS} FROM pools p ORDER BY p.id`);
    return rows.map(toPool);
  }

  async getPool(id: number): Promise<PoolWithMembers | null> {
    const pool = await readPool(this.sql, id);
    if (pool === null) return null;
    const rows = await this.sql.unsafe<DeviceRow[]>(`SELECT ${DEVICE_COLUMNS} FROM pools p, ${POOL_MEMBERS} AND p.id = $1 ORDER BY d.id`, [id]);
    return { ...pool, members: rows.map(toDevice) };
  }

  async updatePool(id: number, p: PoolPatch): Promise<PoolRecord> {
    const members = explicitOrSelector(p.devices, p.selector, false);
    return this.write(() =>
      this.sql.begin(async (tx) => {
        const [found] = await tx<{ id: number }[]>`
          UPDATE pools SET
            name = coalesce(${p.name ?? null}::text, name),
            selector = CASE WHEN ${members.devices !== null}::boolean THEN NULL
              ELSE coalesce(${members.selector === null ? null : tx.json(members.selector)}::jsonb, selector) END,
            updated_at = now()
          WHERE id = ${id} RETURNING id`;
        if (found === undefined) throw notFound('pool', id);
        // A selector pool has no explicit members; new explicit members replace the old ones.
        if (members.devices !== null || members.selector !== null) await tx`DELETE FROM pool_devices WHERE pool_id = ${id}`;
        if (members.devices !== null) await setPoolDevices(tx, id, members.devices);
        return (await readPool(tx, id))!;
      }),
    );
  }

  async removePool(id: number): Promise<PoolRecord | null> {
    return this.write(() =>
      this.sql.begin(async (tx) => {
        const pool = await readPool(tx, id);
        if (pool === null) return null;
        const [row] = await tx<{ count: number }[]>`SELECT count(*)::integer AS count FROM keys WHERE target_pool_id = ${id}`;
        const count = row?.count ?? 0;
        if (count > 0) throw new StoreError('conflict', `pool ${id} is the target of ${count} key${count === 1 ? '' : 's'}`);
        try {
          await tx`DELETE FROM pools WHERE id = ${id}`;
        } catch (err) {
          // A key created meanwhile: the foreign key refuses the delete, and that is the same conflict.
          if ((err as { code?: string }).code === '23503') throw new StoreError('conflict', `pool ${id} is the target of a key`, { cause: err });
          throw err;
        }
        return pool;
      }),
    );
  }

  // ---- Keys ----

  async createKey(n: NewKey): Promise<KeyRecord> {
    const [device, pool] = targetColumns(n.target);
    return this.write(() =>
      this.keyWrites.statement({
        statement: (q) =>
          q.unsafe(
            `INSERT INTO keys AS k (name, key_hash, target_device_id, target_pool_id, expires_at, disabled, limits)
             VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) RETURNING ${KEY_COLUMNS}`,
            [n.name ?? null, n.keyHash, device, pool, n.expiresAt ?? null, n.disabled ?? false, (n.limits ?? {}) as never],
          ),
        result: (rows) => toKey(rows[0] as KeyRow),
      }),
    );
  }

  async listKeys(): Promise<KeyRecord[]> {
    const rows = await this.sql.unsafe<KeyRow[]>(`SELECT ${KEY_COLUMNS} FROM keys k ORDER BY k.id`);
    return rows.map(toKey);
  }

  async getKey(id: number): Promise<KeyRecord | null> {
    const [row] = await this.sql.unsafe<KeyRow[]>(`SELECT ${KEY_COLUMNS} FROM keys k WHERE k.id = $1`, [id]);
    return row === undefined ? null : toKey(row);
  }

  async updateKey(id: number, p: KeyPatch): Promise<KeyRecord> {
    const [device, pool] = p.target === undefined ? [null, null] : targetColumns(p.target);
    return this.write(() =>
      this.keyWrites.statement({
        statement: (q) =>
          q.unsafe(
            `UPDATE keys AS k SET
               name = CASE WHEN $2 THEN $3::text ELSE k.name END,
               target_device_id = CASE WHEN $4 THEN $5::integer ELSE k.target_device_id END,
               target_pool_id = CASE WHEN $4 THEN $6::integer ELSE k.target_pool_id END,
               expires_at = CASE WHEN $7 THEN $8::timestamptz ELSE k.expires_at END,
               disabled = coalesce($9::boolean, k.disabled),
               limits = coalesce($10::jsonb, k.limits),
               updated_at = now()
             WHERE k.id = $1 RETURNING ${KEY_COLUMNS}`,
            [id, p.name !== undefined, p.name ?? null, p.target !== undefined, device, pool, p.expiresAt !== undefined, p.expiresAt ?? null, p.disabled ?? null, (p.limits ?? null) as never],
          ),
        result: keyOrNull,
      }),
    ).then((key) => key ?? throwNotFound('key', id));
  }

  async rotateKey(id: number, keyHash: string): Promise<KeyRecord> {
    return this.write(() =>
      this.keyWrites.statement({
        statement: (q) => q.unsafe(`UPDATE keys AS k SET key_hash = $2, updated_at = now() WHERE k.id = $1 RETURNING ${KEY_COLUMNS}`, [id, keyHash]),
        result: keyOrNull,
      }),
    ).then((key) => key ?? throwNotFound('key', id));
  }

  async removeKey(id: number): Promise<KeyRecord | null> {
    return this.write(() =>
      this.keyWrites.statement({
        statement: (q) => q.unsafe(`DELETE FROM keys AS k WHERE k.id = $1 RETURNING ${KEY_COLUMNS}`, [id]),
        result: keyOrNull,
      }),
    );
  }

  /**
   * One statement, so one round trip: the data path calls this on every key-cache miss, while the customer's
   * connection waits, and on a remote database each extra round trip (key, then pool, then members) would add
   * its latency to that wait. One row per eligible device, the key's columns repeated; one row with no device
   * when there is none.
   */
  async resolveKey(keyHash: string): Promise<ResolvedKey | null> {
    const rows = await this.sql<(Partial<DeviceRow> & ResolveRow)[]>`
      SELECT k.id AS key_id, k.disabled AS key_disabled, k.expires_at AS key_expires_at,
        k.target_device_id AS key_device_id, k.target_pool_id AS key_pool_id, k.limits AS key_limits,
        d.id, d.name, d.ip, d.ipv6, d.port, d.protocol, d.labels, d.headscale_node_id, d.enabled, d.created_at, d.updated_at
      FROM keys k
      LEFT JOIN LATERAL (
        SELECT d.* FROM devices d WHERE d.id = k.target_device_id
        UNION ALL
        SELECT d.* FROM pools p JOIN pool_devices pd ON pd.pool_id = p.id JOIN devices d ON d.id = pd.device_id
          WHERE p.id = k.target_pool_id AND p.selector IS NULL
        UNION ALL
        SELECT d.* FROM pools p JOIN devices d ON d.labels @> p.selector
          WHERE p.id = k.target_pool_id AND p.selector IS NOT NULL
      ) d ON d.enabled
      WHERE k.key_hash = ${keyHash}
      ORDER BY d.id`;
    const first = rows[0];
    if (first === undefined) return null;
    const devices: DeviceRecord[] = [];
    for (const row of rows) if (row.id !== null && row.id !== undefined) devices.push(toDevice(row as DeviceRow));
    return {
      id: first.key_id,
      disabled: first.key_disabled,
      expiresAt: first.key_expires_at,
      target: toTarget(first.key_device_id, first.key_pool_id),
      limits: first.key_limits,
      devices,
    };
  }

  // ---- Usage (migration 5) ----

  async addUsage(deltas: readonly UsageDelta[]): Promise<void> {
    if (deltas.length === 0) return;
    const n = deltas.length;
    const hours: string[] = new Array(n);
    const cols: number[][] = [[], [], [], [], [], [], []];
    for (let i = 0; i < n; i++) {
      const d = deltas[i]!;
      hours[i] = new Date(d.hour).toISOString();
      cols[0]!.push(d.keyId);
      cols[1]!.push(d.deviceId);
      cols[2]!.push(d.bytesUp);
      cols[3]!.push(d.bytesDown);
      cols[4]!.push(d.tunnels);
      cols[5]!.push(d.refused);
      cols[6]!.push(d.failures);
    }
    // Arrays as text: the client would otherwise send JavaScript numbers as int4, and byte counts outgrow it.
    const big = (a: number[]) => `{${a.join(',')}}`;
    await this.sql.unsafe(
      `INSERT INTO usage_hourly AS u (hour, key_id, device_id, bytes_up, bytes_down, tunnels, refused, failures)
       SELECT * FROM unnest($1::timestamptz[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
       ON CONFLICT (hour, key_id, device_id) DO UPDATE SET
         bytes_up = u.bytes_up + EXCLUDED.bytes_up,
         bytes_down = u.bytes_down + EXCLUDED.bytes_down,
         tunnels = u.tunnels + EXCLUDED.tunnels,
         refused = u.refused + EXCLUDED.refused,
         failures = u.failures + EXCLUDED.failures`,
      [`{${hours.map((h) => `"${h}"`).join(',')}}`, ...cols.map(big)],
    );
  }

  async usageSeries(subject: UsageSubject, id: number, from: Date, to: Date, step: UsageStep): Promise<UsagePoint[]> {
    const column = subject === 'key' ? 'key_id' : 'device_id';
    const bucket = stepBucket(step);
    const rows = await this.sql.unsafe<UsageRow[]>(
      `SELECT ${bucket} AS t, ${USAGE_SUMS} FROM usage_hourly
       WHERE ${column} = $1 AND hour >= $2 AND hour < $3 GROUP BY 1 ORDER BY 1`,
      [id, from, to],
    );
    return rows.map((r) => ({ t: r.t, ...usageCounts(r) }));
  }

  async usageTotals(subject: UsageSubject, from: Date, to: Date): Promise<UsageTotal[]> {
    const [column, table] = subject === 'key' ? ['key_id', 'keys'] : ['device_id', 'devices'];
    const rows = await this.sql.unsafe<(UsageRow & { id: string; name: string | null })[]>(
      `SELECT u.id, x.name, u.bytes_up, u.bytes_down, u.tunnels, u.refused, u.failures FROM (
         SELECT ${column} AS id, ${USAGE_SUMS} FROM usage_hourly
         WHERE hour >= $1 AND hour < $2 AND ${column} <> 0 GROUP BY 1
       ) u LEFT JOIN ${table} x ON x.id = u.id
       ORDER BY u.bytes_up + u.bytes_down DESC, u.id`,
      [from, to],
    );
    return rows.map((r) => ({ id: Number(r.id), name: r.name, ...usageCounts(r) }));
  }

  async usageBytesSeries(subject: UsageSubject, from: Date, to: Date, step: UsageStep): Promise<UsageBytesSeries[]> {
    const [column, table] = subject === 'key' ? ['key_id', 'keys'] : ['device_id', 'devices'];
    // Every row of the table (a device with no traffic still gets its flat line), and ids with usage but no row (deleted).
    const rows = await this.sql.unsafe<{ id: number; name: string | null; t: Date | null; bytes: string | null }[]>(
      `SELECT coalesce(x.id, u.id) AS id, x.name, u.t, u.bytes FROM ${table} x FULL JOIN (
         SELECT ${column} AS id, ${stepBucket(step)} AS t, sum(bytes_up + bytes_down)::bigint AS bytes FROM usage_hourly
         WHERE hour >= $1 AND hour < $2 AND ${column} <> 0 GROUP BY 1, 2
       ) u ON u.id = x.id
       ORDER BY 1, 3`,
      [from, to],
    );
    const out: UsageBytesSeries[] = [];
    for (const r of rows) {
      const id = Number(r.id);
      let last = out.at(-1);
      if (last?.id !== id) out.push((last = { id, name: r.name, steps: [] }));
      if (r.t !== null) last.steps.push({ t: r.t.getTime(), bytes: Number(r.bytes) });
    }
    return out;
  }

  async keyBytesSince(keys: readonly { keyId: number; since: number }[]): Promise<number[]> {
    if (keys.length === 0) return [];
    const rows = await this.sql.unsafe<{ bytes: string }[]>(
      `SELECT (SELECT coalesce(sum(u.bytes_up + u.bytes_down), 0) FROM usage_hourly u WHERE u.key_id = q.key_id AND u.hour >= q.since) AS bytes
       FROM unnest($1::bigint[], $2::timestamptz[]) WITH ORDINALITY AS q(key_id, since, i) ORDER BY q.i`,
      [`{${keys.map((k) => k.keyId).join(',')}}`, `{${keys.map((k) => `"${new Date(k.since).toISOString()}"`).join(',')}}`],
    );
    return rows.map((r) => Number(r.bytes));
  }

  async keyNames(ids: readonly number[]): Promise<Map<number, string | null>> {
    const names = new Map<number, string | null>();
    if (ids.length === 0) return names;
    const rows = await this.sql.unsafe<{ id: number; name: string | null }[]>(`SELECT id, name FROM keys WHERE id = ANY($1::integer[])`, [
      `{${ids.join(',')}}`,
    ]);
    for (const r of rows) names.set(r.id, r.name);
    return names;
  }

  async ping(): Promise<void> {
    await this.sql`SELECT 1`;
  }

  private closing: Promise<void> | undefined;

  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.sql.end({ timeout: 5 });
      } finally {
        await this.release();
      }
    })();
    return this.closing;
  }
}

/** The start of a row's step: its hour, or its UTC day whatever the session's time zone. */
function stepBucket(step: UsageStep): string {
  return step === 'hour' ? 'hour' : "date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'";
}

// Sums of bigint are numeric: cast back so that they come as int8 text, and Number() them (exact below 2^53 bytes).
const USAGE_SUMS = `sum(bytes_up)::bigint AS bytes_up, sum(bytes_down)::bigint AS bytes_down, sum(tunnels)::bigint AS tunnels,
  sum(refused)::bigint AS refused, sum(failures)::bigint AS failures`;

interface UsageRow {
  t: Date;
  bytes_up: string;
  bytes_down: string;
  tunnels: string;
  refused: string;
  failures: string;
}

function usageCounts(r: Omit<UsageRow, 't'>): { bytesUp: number; bytesDown: number; tunnels: number; refused: number; failures: number } {
  return { bytesUp: Number(r.bytes_up), bytesDown: Number(r.bytes_down), tunnels: Number(r.tunnels), refused: Number(r.refused), failures: Number(r.failures) };
}

interface ResolveRow {
  key_id: number;
  key_disabled: boolean;
  key_expires_at: Date | null;
  key_device_id: number | null;
  key_pool_id: number | null;
  key_limits: KeyLimits;
}

/** A pool's membership as given: explicit device ids or a selector (null for what was not given). */
function explicitOrSelector(
  devices: number[] | undefined,
  selector: Labels | undefined,
  required: boolean,
): { devices: number[] | null; selector: Labels | null } {
  if (devices !== undefined && selector !== undefined) throw new StoreError('invalid', 'a pool has either devices or a selector, not both');
  if (required && devices === undefined && selector === undefined) throw new StoreError('invalid', 'a pool needs devices or a selector');
  return { devices: devices ?? null, selector: selector ?? null };
}

async function setPoolDevices(tx: TransactionSql, poolId: number, devices: number[]): Promise<void> {
  if (devices.length === 0) return;
  await tx`
    INSERT INTO pool_devices (pool_id, device_id)
    SELECT ${poolId}, unnest(${tx.array(devices)}::integer[])
    ON CONFLICT DO NOTHING`;
}

async function readPool(sql: Sql | TransactionSql, id: number): Promise<PoolRecord | null> {
  const [row] = await sql.unsafe<PoolRow[]>(`SELECT ${POOL_COLUMNS} FROM pools p WHERE p.id = $1`, [id]);
  return row === undefined ? null : toPool(row);
}

/**
 * The store on a real PostgreSQL server, which can also deliver change notifications (LISTEN/NOTIFY), so
 * several gateways sharing one database see each other's registrations and revocations at once.
 */
export class NotifyingSqlNodeStore extends SqlNodeStore {
  constructor(
    sql: Sql,
    private readonly log: Logger,
    /** A new single-connection client for listening, so a broken listener can be thrown away whole. */
    private readonly connectListener: () => Sql,
    /** How often the listener proves it still receives; a lost listener is replaced within two periods. */
    private readonly heartbeatMs = 30_000,
  ) {
    super(sql);
  }

  /** Set while watching: replaces the listener now (after an outage, rather than at the next heartbeat). */
  private relisten: (() => void) | undefined;

  /** The database is reachable again after an outage: listen on a new connection, and resync once it listens. */
  checkListener(): void {
    this.relisten?.();
  }

  async watch(onChange: (change: NodeChange) => void, onResync: (reconnected: boolean) => void): Promise<() => Promise<void>> {
    let listener: Sql | undefined;
    // The nonce of our last heartbeat while it has not come back through the listener.
    let outstanding: string | undefined;
    let busy = false;
    let stopped = false;

    const onNotify = (payload: string) => {
      const colon = payload.indexOf(':');
      const kind = payload.slice(0, colon);
      const rest = payload.slice(colon + 1);
      if (kind === 'PING') {
        if (rest === outstanding) outstanding = undefined;
        return;
      }
      if (kind === 'RESYNC') {
        onResync(false);
        return;
      }
      const op = CHANGE_OPS[kind];
      if (op !== undefined && KEY_HASH.test(rest)) onChange({ op, keyHash: rest });
    };
    // `postgres` re-listens by itself when the listening connection drops, calling onlisten again (we resync
    // then). If the database refuses it at that moment it gives the listener up without a word, and its
    // bookkeeping is then not to be trusted: the heartbeat notices, and replaces the whole client.
    const onListen = () => onResync(true);
    // A LISTEN sent while the database refuses new connections can be left unanswered by `postgres` for good; without a
    // bound the heartbeat, busy with it, would never beat again and this gateway would hear no change from then on.
    const listenMs = Math.max(1_000, Math.min(this.heartbeatMs, 10_000));
    const subscribe = async () => {
      if (stopped) return;
      const client = this.connectListener();
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          client.listen(NODES_CHANNEL, onNotify, onListen),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`LISTEN not answered within ${listenMs} ms`)), listenMs);
          }),
        ]);
      } catch (err) {
        await client.end({ timeout: 0 }).catch(() => {});
        throw err;
      } finally {
        clearTimeout(timer);
      }
      // Stopped while this LISTEN was on its way (a heartbeat's replacement): nobody would end this client, and
      // `postgres` re-listens on a lost connection for ever, also to a database that no longer exists.
      if (stopped) {
        await client.end({ timeout: 0 }).catch(() => {});
        return;
      }
      listener = client;
    };
    const replace = async () => {
      const old = listener;
      listener = undefined;
      await old?.end({ timeout: 0 }).catch(() => {});
      await subscribe();
    };
    await subscribe();

    const beat = async () => {
      if (outstanding !== undefined || listener === undefined) {
        this.log.warn('database change notifications stopped arriving; listening again');
        outstanding = undefined;
        await replace();
      }
      const nonce = randomBytes(6).toString('hex');
      outstanding = nonce;
      await this.sql`SELECT pg_notify(${NODES_CHANNEL}, ${`PING:${nonce}`})`;
    };
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      beat()
        .catch((err: Error) => this.log.debug({ err: err.message }, 'change-notification heartbeat failed; retrying'))
        .finally(() => (busy = false));
    }, this.heartbeatMs);
    timer.unref();
    let retry: NodeJS.Timeout | undefined;
    this.relisten = () => {
      clearTimeout(retry);
      if (busy) {
        retry = setTimeout(() => this.relisten?.(), 200);
        retry.unref();
        return;
      }
      busy = true;
      outstanding = undefined;
      replace()
        .then(() => stopped || this.log.info('listening for database change notifications again'))
        .catch((err: Error) => {
          // The database went away again: try each second rather than wait for the heartbeat.
          this.log.debug({ err: err.message }, 'could not listen for change notifications again; retrying');
          retry = setTimeout(() => this.relisten?.(), 1_000);
          retry.unref();
        })
        .finally(() => (busy = false));
    };

    return async () => {
      stopped = true;
      this.relisten = undefined;
      clearTimeout(retry);
      clearInterval(timer);
      const last = listener;
      listener = undefined;
      await last?.end({ timeout: 1 }).catch(() => {});
    };
  }
}
