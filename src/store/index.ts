import postgres from 'postgres';
import type { Logger } from '../log.js';
import { clientConnectionOptions, describeDatabaseUrl, type DatabaseTarget } from './database-url.js';
import { openEmbedded } from './embedded.js';
import { migrate } from './migrations.js';
import { NotifyingSqlNodeStore, SqlNodeStore } from './postgres-store.js';
import type { NodeStore, RegistryStore } from './types.js';

export type * from './types.js';
export { StoreError, type StoreErrorKind } from './errors.js';
export { describeDatabaseUrl, parseDatabaseUrl, type DatabaseTarget } from './database-url.js';

export interface OpenStoreOptions {
  /** The server to use (see parseDatabaseUrl); undefined selects the embedded database under dataDir. */
  database: DatabaseTarget | undefined;
  dataDir: string;
  log: Logger;
  /** Period of the change-notification heartbeat (real servers only). */
  heartbeatMs?: number;
}

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
    onnotice: (notice: postgres.Notice) => log.debug({ notice: notice.message }, 'database notice'),
  };
  const sql = postgres({ ...clientOptions, max: 10, idle_timeout: 60 });
  const store = new NotifyingSqlNodeStore(sql, log, () => postgres({ ...clientOptions, max: 1 }), opts.heartbeatMs);
  try {
    await migrate(sql, log);
  } catch (err) {
    await store.close().catch(() => {});
    throw new Error(`database ${where}: ${connectFailure(target, err as NodeJS.ErrnoException)}`, { cause: err });
  }
  log.info({ database: where }, 'database ready');
  return store;
}

/** The client's error, with what it means for a unix socket spelled out (Node says only `connect ENOENT <path>`). */
function connectFailure(target: DatabaseTarget, err: NodeJS.ErrnoException): string {
  if (target.path !== undefined && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) {
    return `no PostgreSQL server listening on the unix socket ${target.path} (${err.message})`;
  }
  return err.message;
}
