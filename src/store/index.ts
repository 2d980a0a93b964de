import postgres from 'postgres';
import type { Logger } from '../log.js';
import { openEmbedded } from './embedded.js';
import { migrate } from './migrations.js';
import { NotifyingSqlNodeStore, SqlNodeStore } from './postgres-store.js';
import type { NodeStore } from './types.js';

export type { NodeStore, NodeRecord, NodeBinding, NodeChange } from './types.js';

export interface OpenStoreOptions {
  /** A postgres:// URL selects that server; undefined selects the embedded database under dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  log: Logger;
  /** Period of the change-notification heartbeat (real servers only). */
  heartbeatMs?: number;
}

/** The URL without its password, for messages. */
export function describeDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'DATABASE_URL';
  }
}

/** Opens the registry and brings its schema up to date; throws with a message naming the database when it cannot. */
export async function openStore(opts: OpenStoreOptions): Promise<NodeStore> {
  const log = opts.log.child({ component: 'store' });
  if (opts.databaseUrl === undefined) {
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

  const where = describeDatabaseUrl(opts.databaseUrl);
  const url = opts.databaseUrl;
  const clientOptions = {
    connect_timeout: 10,
    connection: { application_name: 'tailgate' },
    onnotice: (notice: postgres.Notice) => log.debug({ notice: notice.message }, 'database notice'),
  };
  const sql = postgres(url, { ...clientOptions, max: 10, idle_timeout: 60 });
  const store = new NotifyingSqlNodeStore(sql, log, () => postgres(url, { ...clientOptions, max: 1 }), opts.heartbeatMs);
  try {
    await migrate(sql, log);
  } catch (err) {
    await store.close().catch(() => {});
    throw new Error(`database ${where}: ${(err as Error).message}`, { cause: err });
  }
  log.info({ database: where }, 'database ready');
  return store;
}
