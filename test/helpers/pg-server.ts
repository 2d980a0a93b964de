// A PostgreSQL server of a test's own (initdb + pg_ctl in a temporary directory, on a free loopback port), for the
// tests that stop and start the database: stopping the shared server would disturb every other test.
import { execFile } from 'node:child_process';
import { chmod, chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PgServer {
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  url: string;
  port: number;
  /** Starts the server again after stop(); waits until it accepts connections. */
  start(): Promise<void>;
  /** Fast shutdown (open sessions are ended, as on a restart); waits until it is down. */
  stop(): Promise<void>;
  /** Stops it (if running) and deletes its directory. */
  remove(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

async function serverBinaries(): Promise<string> {
  let versions: string[];
  try {
    versions = (await readdir('/usr/lib/postgresql')).sort((a, b) => Number(b) - Number(a));
  } catch {
    versions = [];
  }
  if (versions.length === 0) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql: apt-get install postgresql');
  return path.join('/usr/lib/postgresql', versions[0]!, 'bin');
}

export async function startPgServer(label = 'pg'): Promise<PgServer> {
  const bin = await serverBinaries();
  const dir = await mkdtemp(path.join(os.tmpdir(), `tailgate-${label}-`));
  const asRoot = process.getuid?.() === 0;
  /** The server's tools run as `postgres` when the test runs as root (PostgreSQL refuses to run as root). */
  const pg = async (tool: string, args: string[], timeoutMs = 30_000): Promise<void> => {
    const cmd = path.join(bin, tool);
    if (asRoot) {
      const quoted = [cmd, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
      await run('su', ['postgres', '-s', '/bin/sh', '-c', quoted], { timeout: timeoutMs });
    } else {
      await run(cmd, args, { timeout: timeoutMs });
    }
  };
  await chmod(dir, 0o700);
  if (asRoot) {
    const { stdout: uid } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    await chown(dir, Number(uid.trim()), Number(gid.trim()));
  }
  const port = await freePort();
  const data = path.join(dir, 'data');
  await pg('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync'], 60_000);
  let running = false;
  const start = async () => {
    await pg('pg_ctl', ['-D', data, '-l', path.join(dir, 'log'), '-w', '-t', '30', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`, 'start']);
    running = true;
  };
  const stop = async () => {
    await pg('pg_ctl', ['-D', data, '-w', '-t', '30', '-m', 'fast', 'stop']);
    running = false;
  };
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start,
    stop,
    async remove() {
      if (running) await stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
