// The tailscaled child process: its command line, an environment without our secrets, its output in our log with
// keys masked, and a clean stop.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createInterface } from 'node:readline';
import type { TailnetConfig } from './types.js';
import type { Logger } from '../log.js';
import { sleep, type Clock } from './clock.js';

/** Variables tailscale(d) has no use for and must not inherit (they would be readable in /proc/PID/environ). */
const SECRET_ENV = ['TS_AUTHKEY', 'TS_AUTH_KEY', 'HEADSCALE_API_KEY', 'TAILGATE_ADMIN_TOKEN', 'TAILGATE_ENROLL_TOKEN', 'DATABASE_URL'];

/** Keys tailscale and headscale print: auth keys, API keys, registration ids. */
const SECRET_PATTERN = /\b(?:tskey-[A-Za-z0-9_-]+|hskey-[a-z]+-[A-Za-z0-9_-]+)/g;

/** Our environment minus the secrets, for tailscaled and `tailscale up`. */
export function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of SECRET_ENV) delete env[name];
  return env;
}

/** `text` with every key tailscale or headscale prints, and our own auth key, masked. */
export function scrubSecrets(text: string, authKey: string): string {
  let out = text.replace(SECRET_PATTERN, '[redacted]');
  if (authKey.length >= 8 && out.includes(authKey)) out = out.split(authKey).join('[redacted]');
  return out;
}

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One tailscaled process as the supervisor drives it. */
export interface TailscaledProcess {
  readonly pid: number | undefined;
  /** False once it has exited, or when it could not be started at all. */
  readonly alive: boolean;
  /** Resolves once it has exited or failed to start; never rejects. */
  readonly exited: Promise<ExitStatus>;
  kill(signal: 'SIGTERM' | 'SIGKILL'): void;
}

/** Starts tailscaled with these arguments. */
export type LaunchTailscaled = (args: string[]) => TailscaledProcess;

/** tailscaled's arguments; `socksPort` turns on its SOCKS5 server on loopback. */
export function tailscaledArgs(cfg: TailnetConfig, socksPort: number | undefined): string[] {
  const args = [`--statedir=${cfg.stateDir}`, `--socket=${cfg.socket}`];
  if (cfg.userspace) args.push('--tun=userspace-networking');
  if (socksPort !== undefined) args.push(`--socks5-server=127.0.0.1:${socksPort}`);
  args.push(...cfg.tailscaledExtraArgs);
  return args;
}

/** The real launcher: spawns `cfg.tailscaledBin` and logs its output line by line, prefixed and scrubbed. */
export function spawnTailscaled(cfg: TailnetConfig, log: Logger): LaunchTailscaled {
  return (args) => {
    let child;
    try {
      child = spawn(cfg.tailscaledBin, args, { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      // Bad arguments throw instead of failing the process; to the supervisor it is a tailscaled that exited at once.
      log.error({ err: (err as Error).message, bin: cfg.tailscaledBin }, 'cannot run tailscaled');
      return { pid: undefined, alive: false, exited: Promise.resolve({ code: null, signal: null }), kill: () => undefined };
    }
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => log.info(`tailscaled: ${scrubSecrets(line, cfg.authKey)}`));
    }
    const exited = new Promise<ExitStatus>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (err) => {
        log.error({ err: err.message, bin: cfg.tailscaledBin }, 'cannot run tailscaled');
        // A binary that cannot be run never emits 'exit'; Node sets exitCode to the negative errno instead.
        if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
      });
    });
    log.info({ pid: child.pid, args }, 'tailscaled started');
    return {
      get pid() {
        return child.pid;
      },
      get alive() {
        return child.exitCode === null && child.signalCode === null;
      },
      exited,
      kill: (signal) => void child.kill(signal),
    };
  };
}

/** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
export async function stopTailscaled(proc: TailscaledProcess, graceMs: number, clock: Clock, log: Logger): Promise<void> {
  if (!proc.alive) return;
  proc.kill('SIGTERM');
  const grace = new AbortController();
  const exitedInTime = await Promise.race([
    proc.exited.then(() => true),
    sleep(clock, graceMs, grace.signal).then(
      () => false,
      () => true,
    ),
  ]);
  grace.abort();
  if (exitedInTime) return;
  log.warn({ graceMs }, 'tailscaled ignored SIGTERM, killing it');
  proc.kill('SIGKILL');
  await proc.exited;
}

/** SIGKILL, for a tailscaled that failed to come up: nothing of it is worth a graceful end. */
export function killTailscaled(proc: TailscaledProcess): Promise<ExitStatus> {
  if (proc.alive) proc.kill('SIGKILL');
  return proc.exited;
}

/**
 * tailscaled processes started with our LocalAPI socket, found through /proc (none elsewhere). At start there should
 * be none: one found was left running by a tailgate that was killed outright (SIGKILL, the OOM killer). tailscaled
 * ignores SIGPIPE and nothing else tells it its parent is gone, so it keeps the socket; a new tailscaled on that
 * socket then exits at once ("address already in use") while the old one answers the LocalAPI in its place.
 */
export function tailscaledsOnSocket(socket: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const flag = `--socket=${socket}`;
  const pids: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv.includes(flag) && path.basename(argv[0] ?? '').startsWith('tailscaled')) pids.push(Number(entry));
    } catch {
      // exited meanwhile, or not ours to read
    }
  }
  return pids;
}

/** Alive and not a zombie (a zombie has exited; its parent has not reaped it yet). */
function processAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Stops the tailscaleds a killed tailgate left on our socket: SIGTERM, SIGKILL after `graceMs`. */
export async function stopLeftoverTailscaleds(socket: string, graceMs: number, log: Logger): Promise<void> {
  const pids = tailscaledsOnSocket(socket);
  if (pids.length === 0) return;
  log.warn({ pids, socket }, 'a tailscaled left running by an earlier tailgate holds our LocalAPI socket; stopping it');
  const signalAll = (signal: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
  };
  // Real time, whatever the supervisor's clock: these are real processes.
  const gone = async (withinMs: number) => {
    for (const deadline = Date.now() + withinMs; Date.now() < deadline; await delay(50)) {
      if (!pids.some(processAlive)) return true;
    }
    return !pids.some(processAlive);
  };
  signalAll('SIGTERM');
  if (await gone(graceMs)) return;
  log.warn({ pids, graceMs }, 'the left-over tailscaled ignored SIGTERM, killing it');
  signalAll('SIGKILL');
  if (!(await gone(2_000))) throw new Error(`a tailscaled left running earlier (pid ${pids.join(', ')}) holds ${socket} and cannot be stopped`);
}
