// Load generator: a child process of bench/run.ts (pinned to its own core with taskset), driven over IPC.
// Each message is one job; the answer carries the job's id. Every loop is bounded by a count and a deadline.
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import * as hdr from 'hdr-histogram-js';
import { download, openTunnel, smallRequest, upload, type ProxySpec, type TargetSpec } from './lib/client.js';
import type { HttpRequestSpec } from './lib/gost.js';
import { unauthorizedAttempts, type UnauthorizedJob } from './lib/unauthorized.js';

export type Job =
  | { type: 'throughput'; proxy: ProxySpec; target: TargetSpec; tunnels: number; bytesEachWay: number; timeoutMs: number }
  | { type: 'setup'; proxy: ProxySpec; target: TargetSpec; concurrency: number; maxCount: number; durationMs: number; warmup: number }
  | { type: 'idle-open'; proxy: ProxySpec; target: TargetSpec; count: number; concurrency: number; timeoutMs: number; maxFailures: number }
  | { type: 'idle-close' }
  | { type: 'churn-traffic'; proxies: ProxySpec[]; target: TargetSpec; longLived: number; setupWorkers: number; paceMs: number; durationMs: number }
  | { type: 'until-usable'; proxy: ProxySpec; target: TargetSpec; deadlineMs: number }
  /** Sends `request` (e.g. gost's PUT of a user list with the new key in it), then times as register-to-usable does. */
  | { type: 'request-then-usable'; request: HttpRequestSpec; proxy: ProxySpec; target: TargetSpec; deadlineMs: number }
  | UnauthorizedJob
  | {
      type: 'register-to-usable';
      api: string;
      token: string;
      device: { ip: string; port: number };
      proxies: ProxySpec[];
      target: TargetSpec;
      trials: number;
      deadlineMs: number;
    };

export interface ThroughputResult {
  tunnels: number;
  upBytes: number;
  upMs: number;
  downBytes: number;
  downMs: number;
  errors: string[];
}

export interface SetupResult {
  count: number;
  failures: number;
  elapsedMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: string[];
}

export interface ChurnTrafficResult {
  perProxy: { kind: string; requests: number; tunnelsCut: number; setups: number; setupFailures: number; errors: string[] }[];
}

export interface UsableResult {
  ok: boolean;
  /** Wall clock (performance.timeOrigin + now) of the first successful tunnel+request. */
  okAtWallMs: number;
  attempts: number;
  lastError: string;
}

export interface RequestThenUsableResult {
  /** From the request's answer (read to its end) to the first successful tunnel + small request; NaN if never. */
  ms: number;
  error: string;
}

export interface RegisterToUsableResult {
  perProxy: { kind: string; samplesMs: number[]; failedTrials: number; errors: string[] }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const wallNow = () => performance.timeOrigin + performance.now();

function noteError(errors: string[], err: unknown): void {
  if (errors.length >= 5) return;
  // fetch() says only "fetch failed"; the reason is in its cause.
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
  errors.push(err instanceof Error ? err.message + cause : String(err));
}

async function throughput(job: Extract<Job, { type: 'throughput' }>): Promise<ThroughputResult> {
  const errors: string[] = [];
  const per = Math.floor(job.bytesEachWay / job.tunnels);
  const sockets: net.Socket[] = [];
  try {
    for (let i = 0; i < job.tunnels; i++) sockets.push(await openTunnel(job.proxy, job.target));
    // Warm the path (JIT, buffers) outside the timed phases.
    await Promise.all(sockets.map((s) => smallRequest(s)));
    let t = performance.now();
    await Promise.all(sockets.map((s) => upload(s, per, job.timeoutMs)));
    const upMs = performance.now() - t;
    t = performance.now();
    await Promise.all(sockets.map((s) => download(s, per, job.timeoutMs)));
    const downMs = performance.now() - t;
    return { tunnels: job.tunnels, upBytes: per * job.tunnels, upMs, downBytes: per * job.tunnels, downMs, errors };
  } catch (err) {
    noteError(errors, err);
    return { tunnels: job.tunnels, upBytes: 0, upMs: 0, downBytes: 0, downMs: 0, errors };
  } finally {
    for (const s of sockets) s.destroy();
  }
}

async function setup(job: Extract<Job, { type: 'setup' }>): Promise<SetupResult> {
  const errors: string[] = [];
  // Microseconds, 1 us .. 60 s, 3 significant digits.
  const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3, useWebAssembly: false });
  let count = 0;
  let failures = 0;
  let started = 0;
  const one = async (record: boolean) => {
    const t0 = performance.now();
    let socket: net.Socket | undefined;
    try {
      socket = await openTunnel(job.proxy, job.target);
      await smallRequest(socket);
      if (record) {
        hist.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
        count++;
      }
    } catch (err) {
      if (record) failures++;
      noteError(errors, err);
    } finally {
      socket?.destroy();
    }
  };
  // Warm-up: caches the key in the gateway and warms the JIT; not recorded.
  for (let i = 0; i < job.warmup; i += job.concurrency) {
    await Promise.all(Array.from({ length: Math.min(job.concurrency, job.warmup - i) }, () => one(false)));
  }
  const t0 = performance.now();
  const deadline = t0 + job.durationMs;
  const worker = async () => {
    while (started < job.maxCount && performance.now() < deadline) {
      started++;
      await one(true);
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  const elapsedMs = performance.now() - t0;
  return {
    count,
    failures,
    elapsedMs,
    p50Ms: hist.getValueAtPercentile(50) / 1000,
    p99Ms: hist.getValueAtPercentile(99) / 1000,
    maxMs: hist.maxValue / 1000,
    errors,
  };
}

let idleSockets: net.Socket[] = [];

async function idleOpen(job: Extract<Job, { type: 'idle-open' }>): Promise<{ opened: number; failed: number; ms: number; errors: string[] }> {
  const errors: string[] = [];
  let next = 0;
  let failed = 0;
  const t0 = performance.now();
  const deadline = t0 + job.timeoutMs;
  const worker = async () => {
    // A proxy that has hit a limit fails every further attempt slowly: stop after maxFailures.
    while (next < job.count && failed < job.maxFailures && performance.now() < deadline) {
      next++;
      try {
        const s = await openTunnel(job.proxy, job.target);
        // One request so that every hop has carried data, as a real idle tunnel has.
        await smallRequest(s);
        s.on('error', () => {});
        idleSockets.push(s);
      } catch (err) {
        failed++;
        noteError(errors, err);
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  return { opened: idleSockets.length, failed, ms: performance.now() - t0, errors };
}

async function idleClose(): Promise<{ closed: number; stillOpen: number }> {
  // Count tunnels the proxy cut while they sat idle: the benchmark must not hide that.
  const stillOpen = idleSockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
  for (const s of idleSockets) s.destroy();
  const closed = idleSockets.length;
  idleSockets = [];
  return { closed, stillOpen };
}

async function churnTraffic(job: Extract<Job, { type: 'churn-traffic' }>): Promise<ChurnTrafficResult> {
  const deadline = performance.now() + job.durationMs;
  const perProxy = job.proxies.map((p) => ({ kind: p.kind, requests: 0, tunnelsCut: 0, setups: 0, setupFailures: 0, errors: [] as string[] }));
  const longLived = async (i: number) => {
    const st = perProxy[i % job.proxies.length]!;
    const proxy = job.proxies[i % job.proxies.length]!;
    let socket: net.Socket | undefined;
    while (performance.now() < deadline) {
      if (socket === undefined) {
        try {
          socket = await openTunnel(proxy, job.target);
          socket.on('error', () => {});
        } catch (err) {
          st.setupFailures++;
          noteError(st.errors, err);
          await sleep(job.paceMs);
          continue;
        }
      }
      try {
        await smallRequest(socket);
        st.requests++;
      } catch (err) {
        st.tunnelsCut++;
        noteError(st.errors, err);
        socket.destroy();
        socket = undefined;
      }
      await sleep(job.paceMs);
    }
    socket?.destroy();
  };
  const setupWorker = async (i: number) => {
    const st = perProxy[i % job.proxies.length]!;
    const proxy = job.proxies[i % job.proxies.length]!;
    while (performance.now() < deadline) {
      let socket: net.Socket | undefined;
      try {
        socket = await openTunnel(proxy, job.target);
        await smallRequest(socket);
        st.setups++;
      } catch (err) {
        st.setupFailures++;
        noteError(st.errors, err);
      } finally {
        socket?.destroy();
      }
      await sleep(job.paceMs);
    }
  };
  await Promise.all([
    ...Array.from({ length: job.longLived }, (_, i) => longLived(i)),
    ...Array.from({ length: job.setupWorkers }, (_, i) => setupWorker(i)),
  ]);
  return { perProxy };
}

async function untilUsable(proxy: ProxySpec, target: TargetSpec, deadlineMs: number): Promise<UsableResult> {
  const deadline = performance.now() + deadlineMs;
  let attempts = 0;
  let lastError = '';
  while (performance.now() < deadline) {
    attempts++;
    let socket: net.Socket | undefined;
    try {
      socket = await openTunnel(proxy, target, Math.max(1, deadline - performance.now()));
      await smallRequest(socket);
      return { ok: true, okAtWallMs: wallNow(), attempts, lastError };
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
      // Bounded retry: a refused connection (process restarting) would otherwise spin.
      await sleep(1);
    } finally {
      socket?.destroy();
    }
  }
  return { ok: false, okAtWallMs: 0, attempts, lastError };
}

async function registerToUsable(job: Extract<Job, { type: 'register-to-usable' }>): Promise<RegisterToUsableResult> {
  const perProxy = job.proxies.map((p) => ({ kind: p.kind, samplesMs: [] as number[], failedTrials: 0, errors: [] as string[] }));
  for (let i = 0; i < job.trials; i++) {
    const st = perProxy[i % job.proxies.length]!;
    const key = `bench-r2u-${randomBytes(12).toString('hex')}`;
    try {
      const res = await fetch(`${job.api}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${job.token}` },
        body: JSON.stringify({ key, ip: job.device.ip, port: job.device.port }),
        signal: AbortSignal.timeout(5_000),
      });
      const body = await res.text();
      if (!res.ok) throw new Error(`POST /register: ${res.status} ${body.slice(0, 200)}`);
      const t0 = wallNow();
      const r = await untilUsable({ ...job.proxies[i % job.proxies.length]!, key }, job.target, job.deadlineMs);
      if (!r.ok) throw new Error(`not usable within ${job.deadlineMs} ms: ${r.lastError}`);
      st.samplesMs.push(r.okAtWallMs - t0);
    } catch (err) {
      st.failedTrials++;
      noteError(st.errors, err);
    }
  }
  return { perProxy };
}

async function requestThenUsable(job: Extract<Job, { type: 'request-then-usable' }>): Promise<RequestThenUsableResult> {
  try {
    const res = await fetch(job.request.url, { method: job.request.method, headers: job.request.headers, body: job.request.body, signal: AbortSignal.timeout(5_000) });
    const body = await res.text();
    if (!res.ok) return { ms: NaN, error: `${job.request.method} ${new URL(job.request.url).pathname}: ${res.status} ${body.slice(0, 200)}` };
    const t0 = wallNow();
    const r = await untilUsable(job.proxy, job.target, job.deadlineMs);
    return r.ok ? { ms: r.okAtWallMs - t0, error: '' } : { ms: NaN, error: `not usable within ${job.deadlineMs} ms: ${r.lastError}` };
  } catch (err) {
    const errors: string[] = [];
    noteError(errors, err);
    return { ms: NaN, error: errors[0]! };
  }
}

async function run(job: Job): Promise<unknown> {
  switch (job.type) {
    case 'throughput':
      return throughput(job);
    case 'setup':
      return setup(job);
    case 'idle-open':
      return idleOpen(job);
    case 'idle-close':
      return idleClose();
    case 'churn-traffic':
      return churnTraffic(job);
    case 'until-usable':
      return untilUsable(job.proxy, job.target, job.deadlineMs);
    case 'register-to-usable':
      return registerToUsable(job);
    case 'request-then-usable':
      return requestThenUsable(job);
    case 'unauthorized':
      return unauthorizedAttempts(job);
  }
}

process.on('message', (msg: { id: number; job: Job }) => {
  run(msg.job).then(
    (result) => process.send!({ id: msg.id, result }),
    (err: unknown) => process.send!({ id: msg.id, error: err instanceof Error ? err.stack ?? err.message : String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send!({ ready: true });
