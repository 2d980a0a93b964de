// Child-process plumbing for the benchmark: every server and the load generator run in their own
// process pinned to a core with taskset, so we can say which core ran what and read each one's CPU time
// and RSS from /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';

export interface Pinned {
  name: string;
  /** A CPU number, or a taskset CPU list such as `0,1`. */
  cpu: number | string;
  child: ChildProcess;
  pid: number;
}

export interface SpawnOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** stdout/stderr go here (appended) unless the caller reads stdout itself. */
  logFile?: string;
  /** Keep stdout as a pipe (for the {"ready":...} line). */
  pipeStdout?: boolean;
  ipc?: boolean;
}

/** Every child still running, so an interrupted run can take them all down (killAll). */
export const running = new Set<ChildProcess>();
/** Those of them that lead a process group of their own, whose members would outlive a kill of the leader alone. */
const groupLeaders = new WeakSet<ChildProcess>();

/** Tracks a child spawned with `detached: true` (so leading a process group) until it exits. */
export function trackGroup(child: ChildProcess): void {
  groupLeaders.add(child);
  running.add(child);
  child.once('exit', () => running.delete(child));
}

/** SIGKILLs every child still running, with the whole group of a group leader. */
export function killAll(): void {
  for (const child of running) {
    try {
      if (groupLeaders.has(child) && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      else child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Starts `cmd args` pinned to one CPU (or a CPU list). taskset execs the command, so the pid is the command's own. */
export function spawnPinned(name: string, cpu: number | string, cmd: string, args: string[], opts: SpawnOptions = {}): Pinned {
  const out = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
  const child = spawn('taskset', ['-c', String(cpu), cmd, ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', opts.pipeStdout ? 'pipe' : out ? 'pipe' : 'ignore', out ? 'pipe' : 'inherit', ...(opts.ipc ? (['ipc'] as const) : [])],
  });
  if (out) {
    if (!opts.pipeStdout) child.stdout?.pipe(out);
    child.stderr?.pipe(out);
  }
  if (child.pid === undefined) throw new Error(`${name}: failed to spawn ${cmd}`);
  running.add(child);
  child.once('exit', () => running.delete(child));
  return { name, cpu, child, pid: child.pid };
}

/**
 * Runs `cmd args` in `cwd` to the end, in a process group of its own: npm does not pass a kill on to the
 * compiler it started, so a timeout or an interrupted run (killAll) ends the whole group.
 */
export function runStep(what: string, cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    trackGroup(child);
    let tail = '';
    const keep = (c: Buffer) => (tail = (tail + c.toString('utf8')).slice(-3000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      running.delete(child);
      reject(new Error(`${what}: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${what} failed (${signal ?? `exit ${code}`}):\n${tail.trim()}`));
    });
  });
}

/** Waits for the first stdout line that parses as JSON with ready: true. */
export function waitReadyLine(p: Pinned, timeoutMs: number): Promise<{ port: number }> {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: p.child.stdout! });
    const timer = setTimeout(() => done(new Error(`${p.name}: not ready within ${timeoutMs} ms`)), timeoutMs);
    const onExit = (code: number | null) => done(new Error(`${p.name}: exited (${code}) before it was ready`));
    p.child.once('exit', onExit);
    rl.on('line', (line) => {
      try {
        const msg = JSON.parse(line) as { ready?: boolean; port?: number };
        if (msg.ready) done(undefined, { port: msg.port ?? 0 });
      } catch {
        // not our line
      }
    });
    function done(err?: Error, v?: { port: number }) {
      clearTimeout(timer);
      p.child.off('exit', onExit);
      rl.close();
      // Keep draining stdout so the child never blocks on a full pipe.
      p.child.stdout?.resume();
      if (err) reject(err);
      else resolve(v!);
    }
  });
}

/** Polls until a TCP connect to 127.0.0.1:port succeeds. */
export async function waitPort(port: number, timeoutMs: number, p?: Pinned): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (p && p.child.exitCode !== null) throw new Error(`${p.name}: exited (${p.child.exitCode}) before listening on ${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${p?.name ?? 'process'}: port ${port} not listening within ${timeoutMs} ms`);
}

/** Every port freePort has returned in this run. */
const handedOut = new Set<number>();

/**
 * A free TCP port for a server we are about to start, taken from below the kernel's ephemeral range
 * (ip_local_port_range starts at 32768): under connection churn an ephemeral port can be grabbed by an
 * outgoing connection between our check and the server's bind, and bind(0) itself fails once TIME_WAIT
 * sockets hold every ephemeral port.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    // Gateways started at once each take ports before any of them binds: the check alone would not keep them apart.
    if (handedOut.has(port)) continue;
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen({ host: '127.0.0.1', port }, () => s.close(() => resolve(true)));
    });
    if (ok) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port found in 20000-31999');
}

export async function stop(p: Pinned | undefined, timeoutMs = 5_000): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.child.once('exit', () => r()));
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/** Resident set size in KiB (VmRSS). */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

const CLOCK_TICKS = 100;

export interface ProcStat {
  /** User + system CPU seconds so far. */
  cpuSeconds: number;
  /** User-mode CPU seconds only (the rest is kernel time: syscalls, loopback TCP). */
  userSeconds: number;
  /** Minor page faults so far: a relay that keeps getting fresh pages for its buffers shows up here. */
  minorFaults: number;
}

const GONE: ProcStat = { cpuSeconds: NaN, userSeconds: NaN, minorFaults: NaN };

/** The fields of /proc/<pid>/stat after the command name (which may contain spaces), from `state` on; undefined once gone. */
function statFields(pid: number): string[] | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** One read of /proc/<pid>/stat; NaN throughout once the process is gone. */
export function procStat(pid: number): ProcStat {
  const fields = statFields(pid);
  if (!fields) return GONE;
  const user = Number(fields[11]);
  return { cpuSeconds: (user + Number(fields[12])) / CLOCK_TICKS, userSeconds: user / CLOCK_TICKS, minorFaults: Number(fields[7]) };
}

export const cpuSeconds = (pid: number): number => procStat(pid).cpuSeconds;

/**
 * Every live descendant of `pid` (children, their children, ...), found through the parent pid in each
 * /proc/<n>/stat: this kernel has no /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN).
 */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const child = Number(name);
    if (!Number.isInteger(child)) continue;
    const parent = Number(statFields(child)?.[1]);
    if (!Number.isInteger(parent)) continue;
    const list = children.get(parent);
    if (list) list.push(child);
    else children.set(parent, [child]);
  }
  const found: number[] = [];
  for (let i = -1; i < found.length; i++) found.push(...(children.get(i < 0 ? pid : found[i]!) ?? []));
  return found;
}

/**
 * `pid` and its live descendants summed, each with the time of the children it has reaped (cutime, cstime and
 * cminflt), so a worker process that exited and was replaced between two samples keeps its share. NaN once `pid`
 * is gone; a descendant that goes between the listing and its read counts as nothing in this sample.
 */
export function processTreeStat(pid: number): ProcStat {
  const sum: ProcStat = { cpuSeconds: 0, userSeconds: 0, minorFaults: 0 };
  for (const member of [pid, ...descendants(pid)]) {
    const fields = statFields(member);
    if (!fields) {
      if (member === pid) return GONE;
      continue;
    }
    const user = Number(fields[11]) + Number(fields[13]);
    sum.userSeconds += user / CLOCK_TICKS;
    sum.cpuSeconds += (user + Number(fields[12]) + Number(fields[14])) / CLOCK_TICKS;
    sum.minorFaults += Number(fields[7]) + Number(fields[8]);
  }
  return sum;
}

/**
 * The gateway under test's part of a CPU sample (bench/lib/measure.ts): `gateway` feeds the per-GiB and per-tunnel
 * figures. The caller says what the gateway is: one process (`procStat`), or a process tree (`processTreeStat`) for a
 * gateway with worker processes.
 */
export function gatewaySample(st: ProcStat): { gateway: number; gatewayUser: number; gatewayMinorFaults: number } {
  return { gateway: st.cpuSeconds, gatewayUser: st.userSeconds, gatewayMinorFaults: st.minorFaults };
}

/** IPC client for bench/loadgen.ts, or another job-driven child of the same protocol (bench/hostile.ts). */
export class LoadGen {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(readonly proc: Pinned) {
    proc.child.on('message', (msg: { id?: number; result?: unknown; error?: string }) => {
      if (msg.id === undefined) return;
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      if (msg.error !== undefined) w.reject(new Error(`${proc.name}: ${msg.error}`));
      else w.resolve(msg.result);
    });
    proc.child.on('exit', (code) => {
      for (const w of this.waiting.values()) w.reject(new Error(`${proc.name} exited (${code})`));
      this.waiting.clear();
    });
  }

  static async start(cpu: number, cwd: string, env: NodeJS.ProcessEnv, script = 'bench/loadgen.ts'): Promise<LoadGen> {
    const name = path.basename(script, '.ts');
    const proc = spawnPinned(name, cpu, process.execPath, ['--import', 'tsx', script], { cwd, env, ipc: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: not ready within 20 s`)), 20_000);
      proc.child.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
      proc.child.once('exit', (code) => reject(new Error(`${name} exited (${code}) at start`)));
    });
    return new LoadGen(proc);
  }

  request<T>(job: object, timeoutMs: number): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`${this.proc.name}: job ${(job as { type: string }).type} did not finish within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.proc.child.send({ id, job });
    });
  }

  async close(): Promise<void> {
    this.proc.child.disconnect?.();
    await stop(this.proc, 2_000);
  }
}
