// The registry in SQL through `postgres` (porsager). One implementation for both a real server and the
// embedded PGlite, which is reached through the same wire protocol.
import { randomBytes } from 'node:crypto';
import type { Sql } from 'postgres';
import type { DeviceProtocol } from '../core/route.js';
import type { Logger } from '../log.js';
import type { NodeBinding, NodeChange, NodeRecord, NodeStore } from './types.js';

/** The channel migration 2's trigger notifies on. */
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

function toRecord(row: NodeRow): NodeRecord {
  return {
    id: row.id,
    name: row.name,
    ip: row.ip,
    ipv6: row.ipv6,
    port: row.port,
    protocol: row.protocol,
    keyHash: row.key_hash,
    headscaleNodeId: row.headscale_node_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export class SqlNodeStore implements NodeStore {
  /**
   * @param sql the client; closed by close()
   * @param release runs after the client is closed (the embedded database's shutdown)
   */
  constructor(
    protected readonly sql: Sql,
    private readonly release: () => Promise<void> = async () => {},
  ) {}

  async findByKeyHash(keyHash: string): Promise<NodeRecord | null> {
    const [row] = await this.sql<NodeRow[]>`
      SELECT id, name, ip, ipv6, port, protocol, key_hash, headscale_node_id, created_at, updated_at
      FROM nodes WHERE key_hash = ${keyHash}`;
    return row === undefined ? null : toRecord(row);
  }

  /**
   * ip, port and protocol are always replaced. name, ipv6 and headscaleNodeId follow "undefined keeps,
   * null clears": a re-registration that does not mention them leaves what is stored alone.
   */
  async upsert(b: NodeBinding): Promise<{ node: NodeRecord; created: boolean }> {
    const [row] = await this.sql<(NodeRow & { created: boolean })[]>`
      INSERT INTO nodes (key_hash, ip, ipv6, port, protocol, name, headscale_node_id)
      VALUES (${b.keyHash}, ${b.ip}, ${b.ipv6 ?? null}, ${b.port}, ${b.protocol}, ${b.name ?? null}, ${b.headscaleNodeId ?? null})
      ON CONFLICT (key_hash) DO UPDATE SET
        ip = EXCLUDED.ip,
        port = EXCLUDED.port,
        protocol = EXCLUDED.protocol,
        ipv6 = CASE WHEN ${b.ipv6 === undefined}::boolean THEN nodes.ipv6 ELSE EXCLUDED.ipv6 END,
        name = CASE WHEN ${b.name === undefined}::boolean THEN nodes.name ELSE EXCLUDED.name END,
        headscale_node_id = CASE WHEN ${b.headscaleNodeId === undefined}::boolean THEN nodes.headscale_node_id ELSE EXCLUDED.headscale_node_id END,
        updated_at = now()
      RETURNING id, name, ip, ipv6, port, protocol, key_hash, headscale_node_id, created_at, updated_at,
        (xmax = 0) AS created`;
    // xmax is 0 only on a freshly inserted row version; an ON CONFLICT update sets it.
    if (row === undefined) throw new Error('upsert returned no row');
    return { node: toRecord(row), created: row.created };
  }

  async list(): Promise<NodeRecord[]> {
    const rows = await this.sql<NodeRow[]>`
      SELECT id, name, ip, ipv6, port, protocol, key_hash, headscale_node_id, created_at, updated_at
      FROM nodes ORDER BY id`;
    return rows.map(toRecord);
  }

  async get(id: number): Promise<NodeRecord | null> {
    const [row] = await this.sql<NodeRow[]>`
      SELECT id, name, ip, ipv6, port, protocol, key_hash, headscale_node_id, created_at, updated_at
      FROM nodes WHERE id = ${id}`;
    return row === undefined ? null : toRecord(row);
  }

  async remove(id: number): Promise<NodeRecord | null> {
    const [row] = await this.sql<NodeRow[]>`
      DELETE FROM nodes WHERE id = ${id}
      RETURNING id, name, ip, ipv6, port, protocol, key_hash, headscale_node_id, created_at, updated_at`;
    return row === undefined ? null : toRecord(row);
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

  async watch(onChange: (change: NodeChange) => void, onResync: () => void): Promise<() => Promise<void>> {
    let listener: Sql | undefined;
    // The nonce of our last heartbeat while it has not come back through the listener.
    let outstanding: string | undefined;
    let busy = false;

    const onNotify = (payload: string) => {
      const colon = payload.indexOf(':');
      const kind = payload.slice(0, colon);
      const rest = payload.slice(colon + 1);
      if (kind === 'PING') {
        if (rest === outstanding) outstanding = undefined;
        return;
      }
      const op = CHANGE_OPS[kind];
      if (op !== undefined && KEY_HASH.test(rest)) onChange({ op, keyHash: rest });
    };
    // `postgres` re-listens by itself when the listening connection drops, calling onlisten again (we resync
    // then). If the database refuses it at that moment it gives the listener up without a word, and its
    // bookkeeping is then not to be trusted: the heartbeat notices, and replaces the whole client.
    const subscribe = async () => {
      const client = this.connectListener();
      try {
        await client.listen(NODES_CHANNEL, onNotify, onResync);
      } catch (err) {
        await client.end({ timeout: 0 }).catch(() => {});
        throw err;
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

    return async () => {
      clearInterval(timer);
      const last = listener;
      listener = undefined;
      await last?.end({ timeout: 1 }).catch(() => {});
    };
  }
}
