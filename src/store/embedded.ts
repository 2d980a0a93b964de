// The embedded default: PGlite (PostgreSQL compiled to WASM) persisted under the data directory, served
// over the PostgreSQL wire protocol by pglite-socket so the one `postgres` client and the one set of SQL
// serve both deployments.
import { mkdir, mkdtemp, rm, stat, chmod } from 'node:fs/promises';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import postgres, { type Sql } from 'postgres';
import type { Logger } from '../log.js';

export interface EmbeddedDatabase {
  sql: Sql;
  /** Stops the socket server and PGlite; call after sql.end(). */
  release(): Promise<void>;
}

// sun_path is 108 bytes on Linux and 104 on macOS, terminating NUL included.
const MAX_UNIX_SOCKET_PATH = 100;

function canConnect(socketPath: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    const done = (alive: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(alive);
    };
    const timer = setTimeout(() => done(true), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

function inUseError(dir: string): Error {
  return new Error(
    `the embedded database in ${dir} is in use by another tailgate process; run one gateway per TAILGATE_DATA_DIR, ` +
      'or point several gateways at one PostgreSQL server with DATABASE_URL',
  );
}

/**
 * Opens (creating on first use) the embedded database in `<dataDir>/pg`.
 *
 * The wire protocol is served on a unix socket in a 0700 directory, not on a loopback TCP port: pglite-socket
 * accepts any credentials, so a TCP port would let every local user edit the registry. The socket doubles
 * as the single-process guard: a second gateway on the same data directory finds it answering and refuses
 * to start instead of opening the same files twice.
 */
export async function openEmbedded(dataDir: string, log: Logger): Promise<EmbeddedDatabase> {
  const pgDir = path.join(path.resolve(dataDir), 'pg');
  // The socket check below sees other processes; this sees a second open in this one (tests, mostly).
  if (openInThisProcess.has(pgDir)) throw inUseError(pgDir);
  openInThisProcess.add(pgDir);
  try {
    return await open(dataDir, pgDir, log);
  } catch (err) {
    openInThisProcess.delete(pgDir);
    throw err;
  }
}

const openInThisProcess = new Set<string>();

async function open(dataDir: string, pgDir: string, log: Logger): Promise<EmbeddedDatabase> {
  const runDir = path.join(dataDir, 'run');
  await mkdir(dataDir, { recursive: true });
  await mkdir(runDir, { recursive: true, mode: 0o700 });
  await chmod(runDir, 0o700);

  let socketPath = path.join(runDir, 'pg.sock');
  let tmpRunDir: string | undefined;
  if (Buffer.byteLength(socketPath) > MAX_UNIX_SOCKET_PATH) {
    // A deep data directory cannot hold a socket; a private temporary directory still keeps other users out,
    // but no longer guards against a second process on the same data directory.
    tmpRunDir = await mkdtemp(path.join(os.tmpdir(), 'tailgate-pg-'));
    socketPath = path.join(tmpRunDir, 'pg.sock');
    log.warn({ dataDir }, 'data directory path too long for a unix socket; serving the embedded database from a temporary directory');
  } else if (await exists(socketPath)) {
    if (await canConnect(socketPath, 1_000)) throw inUseError(pgDir);
    // Left behind by a process that did not shut down cleanly.
    await rm(socketPath, { force: true });
  }

  const firstRun = !(await exists(path.join(pgDir, 'PG_VERSION')));
  const started = Date.now();
  if (firstRun) log.info({ dir: pgDir }, 'creating the embedded database (first start takes a few seconds)');
  const db = await PGlite.create(pgDir);
  // The pool below holds one connection; the headroom lets a reconnect in while a dead one is torn down.
  const server = new PGLiteSocketServer({ db, path: socketPath, maxConnections: 4 });
  try {
    await server.start();
  } catch (err) {
    await db.close().catch(() => {});
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw inUseError(pgDir);
    throw err;
  }
  log.info({ dir: pgDir, ms: Date.now() - started }, 'embedded database ready');

  // pglite-socket shares one backend session among its connections and runs one query at a time, so a
  // single connection is all that helps; more would only interleave transactions on the shared session.
  const sql = postgres({
    path: socketPath,
    user: 'postgres',
    database: 'postgres',
    max: 1,
    idle_timeout: 0,
    connect_timeout: 10,
    onnotice: (notice) => log.debug({ notice: notice.message }, 'embedded database notice'),
  });

  let released: Promise<void> | undefined;
  const release = () => {
    released ??= (async () => {
      try {
        await server.stop();
      } finally {
        await db.close();
        openInThisProcess.delete(pgDir);
        if (tmpRunDir !== undefined) await rm(tmpRunDir, { recursive: true, force: true });
      }
    })();
    return released;
  };
  return { sql, release };
}
