// Third-party clients run as child processes for the compatibility test: a clean environment (no proxy variables from
// the machine, a throw-away HOME), a hard timeout on every run, and a missing client reported with how to install it.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { closeServer, listen } from './targets.js';

export interface ClientRun {
  /** The exit code; -1 when the process was killed (timeout) or could not start. */
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs `file` with `args`; never rejects, so a failing client is an answer the test can read. */
export function runClient(file: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<ClientRun> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  // Only PATH, HOME and the locale pass: http_proxy, NO_PROXY and friends on the machine must not steer the clients.
  const env = opts.env ?? { PATH: process.env.PATH, HOME: os.tmpdir(), LANG: 'C' };
  return new Promise((resolve) => {
    execFile(file, args, { env, cwd: opts.cwd, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err === null) return resolve({ exitCode: 0, stdout, stderr });
      const exitCode = typeof err.code === 'number' ? err.code : -1;
      const why = exitCode === -1 ? `\n[${file} did not finish: ${err.killed ? `killed after ${timeoutMs} ms` : err.message}]` : '';
      resolve({ exitCode, stdout, stderr: `${stderr}${why}` });
    });
  });
}

/** Throws unless `file` is an executable path or a command on PATH; the message says how to install it. */
export async function requireClient(file: string, installHint: string): Promise<void> {
  const found = file.includes('/') ? existsSync(file) : (await runClient('sh', ['-c', `command -v ${file}`])).exitCode === 0;
  if (!found) throw new Error(`${file} is not installed: ${installHint}`);
}

/** The first line a version command prints, for the test's report. */
export async function versionOf(file: string, args: string[]): Promise<string> {
  const r = await runClient(file, args);
  return `${r.stdout}${r.stderr}`.trim().split('\n')[0] ?? '';
}

const GO_CLIENT_DIR = path.resolve('test', 'clients', 'go');
const TOOLS_DIR = process.env.TAILGATE_TOOLS_DIR ?? path.join(os.homedir(), '.cache', 'tailgate-tools');

/**
 * Builds the Go client (test/clients/go) into the tools cache outside the repository, once per version of its sources,
 * and returns the binary's path. Needs the Go toolchain and the module proxy (for golang.org/x/net) on the first build.
 */
export async function buildGoClient(): Promise<string> {
  const hash = createHash('sha256');
  for (const name of ['go.mod', 'go.sum', 'main.go']) hash.update(await readFile(path.join(GO_CLIENT_DIR, name)));
  const dir = path.join(TOOLS_DIR, `go-client-${hash.digest('hex').slice(0, 12)}`);
  const binary = path.join(dir, 'go-client');
  if (existsSync(binary)) return binary;
  await requireClient('go', 'install Go >= 1.26 (the same toolchain scripts/go-tools.sh needs)');
  await mkdir(dir, { recursive: true });
  const temp = `${binary}.${process.pid}.tmp`;
  const built = await runClient('go', ['build', '-buildvcs=false', '-o', temp, '.'], { cwd: GO_CLIENT_DIR, env: process.env, timeoutMs: 300_000 });
  if (built.exitCode !== 0) throw new Error(`building the Go client in ${GO_CLIENT_DIR} failed (exit ${built.exitCode}):\n${built.stderr}`);
  await rename(temp, binary);
  return binary;
}

/** A TCP relay in front of a port that keeps the first bytes each side sent, to show what a client said on the wire. */
export interface Tap {
  port: number;
  /** Per connection: the client's first chunk and the server's first answer (empty until one came), and whether it ended. */
  exchanges: { client: Buffer; server: Buffer; closed: boolean }[];
  close(): Promise<void>;
}

export async function startTap(targetPort: number, host = '127.0.0.1'): Promise<Tap> {
  const exchanges: Tap['exchanges'] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const exchange = { client: Buffer.alloc(0), server: Buffer.alloc(0), closed: false };
    exchanges.push(exchange);
    const upstream = net.connect(targetPort, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    client.once('close', () => (exchange.closed = true));
    client.once('data', (c: Buffer) => (exchange.client = Buffer.from(c)));
    upstream.once('data', (c: Buffer) => (exchange.server = Buffer.from(c)));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const port = await listen(server, host);
  return {
    port,
    exchanges,
    async close() {
      for (const s of sockets) s.destroy();
      await closeServer(server);
    },
  };
}
