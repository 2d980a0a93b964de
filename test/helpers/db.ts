// A throw-away database on the local PostgreSQL per test file: created at the start, dropped at the end,
// named so that parallel runs (and other people's) never meet.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { parseDatabaseUrl, type DatabaseTarget } from '../../src/store/database-url.js';

/** The server tests run against; override for a non-default server. */
export const ADMIN_DATABASE_URL = process.env.TAILGATE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  name: string;
  url: string;
  /** The URL resolved as tailgate's configuration resolves DATABASE_URL, for openStore. */
  target: DatabaseTarget;
  /** A client on the test database for inspecting tables directly; closed by drop(). */
  sql: postgres.Sql;
  drop(): Promise<void>;
}

function adminClient(): postgres.Sql {
  return postgres(ADMIN_DATABASE_URL, { max: 1, connect_timeout: 5, onnotice: () => {} });
}

export async function createTestDatabase(label = 'test'): Promise<TestDatabase> {
  const name = `tailgate_${label.replace(/[^a-z0-9_]/g, '_')}_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = adminClient();
  try {
    await admin.unsafe(`CREATE DATABASE "${name}"`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint =
      code === 'ECONNREFUSED' ? ' (is PostgreSQL running? pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)' : '';
    throw new Error(`cannot create a test database on ${ADMIN_DATABASE_URL}: ${(err as Error).message}${hint}`, { cause: err });
  } finally {
    await admin.end({ timeout: 5 });
  }
  const u = new URL(ADMIN_DATABASE_URL);
  u.pathname = `/${name}`;
  const url = u.toString();
  const sql = postgres(url, { max: 2, connect_timeout: 5, onnotice: () => {} });
  let dropped = false;
  return {
    name,
    url,
    target: parseDatabaseUrl(url, process.env),
    sql,
    async drop() {
      if (dropped) return;
      dropped = true;
      await sql.end({ timeout: 5 });
      const admin = adminClient();
      try {
        // FORCE ends sessions a failed test may have left open.
        await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await admin.end({ timeout: 5 });
      }
    },
  };
}

/** A fresh temporary directory, removed by the returned function. */
export async function createTempDir(label = 'tailgate'): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `${label}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
