// A whole gateway in a child process of its own, as `npm start` runs it (`--initial-old-space-size=64`, here on
// the sources through tsx), so that a test can read what only a process shows: its open descriptors
// (/proc/<pid>/fd) and its resident memory (/proc/<pid>/status).
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { WebSocket } from 'undici';
import { waitFor } from '../../testbed/wait.js';
import { adminCall } from './connect-tunnel.js';
import { loopbackEnv } from './gateway-config.js';

export interface GatewayProcess {
  child: ChildProcess;
  pid: number;
  ports: { http: number; socks: number; api: number };
  token: string;
  /** Everything it printed so far (JSON log lines). */
  output(): string;
  /** Descriptors open in the process now. */
  openFds(): number;
  /** VmRSS in KiB. */
  rssKiB(): number;
  /**
   * A full garbage collection now, through the inspector (only when started with `--inspect=127.0.0.1:0`): the same
   * collection a heap snapshot starts, without the snapshot's own memory.
   */
  collectGarbage(): Promise<void>;
  /** The sum of a metric's samples over its labels, from /metrics. */
  metric(name: string): Promise<number>;
  stop(): Promise<number | null>;
}

const REPO = new URL('../../', import.meta.url);

export async function startGatewayProcess(env: Record<string, string>, nodeArgs: string[] = []): Promise<GatewayProcess> {
  const token = 'faults-admin-token-0123456789';
  const child = spawn(process.execPath, ['--initial-old-space-size=64', ...nodeArgs, '--import', 'tsx', 'src/main.ts'], {
    cwd: REPO,
    env: {
      PATH: process.env.PATH ?? '',
      ...loopbackEnv(token),
      TAILGATE_LOG_FORMAT: 'json',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  // Kept short: a gateway under attack may log a lot, and only the start line and the last words matter.
  const keep = (c: Buffer) => {
    out += c.toString();
    if (out.length > 1 << 20) out = out.slice(-(1 << 19));
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await waitFor('tailgate listening', 60_000, () => {
      if (child.exitCode !== null) throw new Error(`the gateway exited (${child.exitCode}) before listening:\n${out.slice(-3000)}`);
      return out.includes('tailgate listening') ? true : undefined;
    }, 20);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const line = JSON.parse(out.split('\n').find((l) => l.includes('tailgate listening'))!) as Record<string, string>;
  const port = (v: string | undefined) => Number(String(v).split(':').pop());
  const ports = { http: port(line.http), socks: port(line.socks5), api: port(line.api) };
  const pid = child.pid!;
  return {
    child,
    pid,
    ports,
    token,
    output: () => out,
    async collectGarbage() {
      const url = /Debugger listening on (ws:\/\/\S+)/.exec(out)?.[1];
      if (url === undefined) throw new Error('the gateway was not started with --inspect=127.0.0.1:0');
      await inspectorCall(url, 'HeapProfiler.collectGarbage');
    },
    openFds: () => readdirSync(`/proc/${pid}/fd`).length,
    rssKiB: () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]),
    async metric(name) {
      const res = await fetch(`http://127.0.0.1:${ports.api}/metrics`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      let sum = 0;
      let seen = false;
      for (const l of text.split('\n')) {
        if (l.startsWith(`${name} `) || l.startsWith(`${name}{`)) {
          sum += Number(l.slice(l.lastIndexOf(' ') + 1));
          seen = true;
        }
      }
      if (!seen) throw new Error(`/metrics has no ${name}`);
      return sum;
    },
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** One DevTools protocol call over the inspector's WebSocket; resolves with its answer, or fails after 60 s. */
function inspectorCall(url: string, method: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => done(new Error(`inspector: no answer to ${method} within 60 s`)), 60_000);
    const done = (err?: Error) => {
      clearTimeout(timer);
      ws.close();
      if (err) reject(err);
      else resolve();
    };
    ws.onopen = () => ws.send(JSON.stringify({ id: 1, method }));
    ws.onmessage = (ev) => {
      const msg = JSON.parse(String(ev.data)) as { id?: number; error?: { message: string } };
      if (msg.id === 1) done(msg.error ? new Error(`inspector: ${method}: ${msg.error.message}`) : undefined);
    };
    ws.onerror = () => done(new Error(`inspector: cannot reach ${url}`));
  });
}

/** Binds `key` to a device proxy on loopback through the API. */
export async function registerDevice(gw: GatewayProcess, key: string, devicePort: number): Promise<void> {
  const r = await adminCall(gw.ports.api, gw.token, 'POST', '/register', { key, ip: '127.0.0.1', port: devicePort });
  if (r.status !== 201 && r.status !== 200) throw new Error(`POST /register answered ${r.status}: ${JSON.stringify(r.json)}`);
}
