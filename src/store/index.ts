import postgres from 'postgres';
import type { Logger } from '../log.js';
import { clientConnectionOptions, describeDatabaseUrl, type DatabaseTarget } from './database-url.js';
import { DatabaseBreaker } from './breaker.js';
import { openEmbedded } from './embedded.js';
import { GuardedStore } from './guarded-store.js';
import { migrate } from './migrations.js';
import { NotifyingSqlNodeStore, SqlNodeStore } from './postgres-store.js';
import type { NodeStore, RegistryStore } from './types.js';

export type * from './types.js';
export { StoreError, type StoreErrorKind } from './errors.js';
export { StoreUnavailableError, isUnreachable } from './breaker.js';
export { describeDatabaseUrl, parseDatabaseUrl, type DatabaseTarget } from './database-url.js';

export interface OpenStoreOptions {
  /** The server to use (see parseDatabaseUrl); undefined selects the embedded database under dataDir. */
  database: DatabaseTarget | undefined;
  dataDir: string;
  log: Logger;
  /** Period of the change-notification heartbeat (real servers only). */
  heartbeatMs?: number;
  /** A call to a real server not answered this long is given up (TAILGATE_DATABASE_TIMEOUT_MS). Default 5000. */
  timeoutMs?: number;
}

/** How often a probe asks whether a database found unreachable is back. */
const PROBE_EVERY_MS = 500;

/**
 * Seconds before a client connection tries again after failing: 50 ms doubling up to 1 s. The client's default grows
 * to 20 s, and a query queued meanwhile waits that long; after an outage the first query would too.
 */
const reconnectBackoff = (retries: number) => Math.min(0.05 * 2 ** retries, 1);

/** Opens the registry and brings its schema up to date; throws with a message naming the database when it cannot. */
export async function openStore(opts: OpenStoreOptions): Promise<NodeStore & RegistryStore> {
  const log = opts.log.child({ component: 'store' });
  const target = opts.database;
  if (target === undefined) {
    const embedded = await openEmbedded(opts.dataDir, log);
    const store = new SqlNodeStore(embedded.sql, embedded.release);
    try {
      await migrate(embedded.sql, log);
    } catch (err) {
      await store.close().catch(() => {});
      throw new Error(`embedded database in ${opts.dataDir}: ${(err as Error).message}`, { cause: err });
    }
    return store;
  }

  const where = describeDatabaseUrl(target);
  const clientOptions = {
    ...clientConnectionOptions(target),
    connect_timeout: 10,
    backoff: reconnectBackoff,
    onnotice: (notice: postgres.Notice) => log.debug({ notice: notice.message }, 'database notice'),
  };
  const sql = postgres({ ...clientOptions, max: 10, idle_timeout: 60 });
  const inner = new NotifyingSqlNodeStore(sql, log, () => postgres({ ...clientOptions, max: 1 }), opts.heartbeatMs);
  try {
    await migrate(sql, log);
  } catch (err) {
    await inner.close().catch(() => {});
    throw new Error(`database ${where}: ${connectFailure(target, err as NodeJS.ErrnoException)}`, { cause: err });
  }
  log.info({ database: where }, 'database ready');
  const breaker = new DatabaseBreaker({ probe: () => inner.ping(), timeoutMs: opts.timeoutMs ?? 5_000, probeEveryMs: PROBE_EVERY_MS, log });
  return new GuardedStore(inner, breaker);
}

/** The client's error, with what it means for a unix socket spelled out (Node says only `connect ENOENT <path>`). */
function connectFailure(target: DatabaseTarget, err: NodeJS.ErrnoException): string {
  if (target.path !== undefined && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) {
    return `no PostgreSQL server listening on the unix socket ${target.path} (${err.message})`;
  }
  return err.message;
}
