// `npm run bench`: measures tailgate against the direct path, the gost stand-in (glider) and proxy-chain,
// on this machine, over loopback, in one run. See bench/README.md for the method and the latest numbers.
//
//   npm run bench                         everything (<= 10 min)
//   npm run bench -- --quick              smoke run (< 2 min)
//   npm run bench -- --only throughput-1  one scenario (comma-separated list allowed)
//   npm run bench -- --only tailnet-overhead   scenario 5: real headscale + tailscaled in a private netns (root)
//   npm run bench -- --paths direct,tailgate
//   npm run bench -- --device node        device stand-in: go (default, bench/device), node or glider
//   npm run bench -- --quick --check      CI smoke: fail unless every scenario produced tailgate's numbers
//   npm run bench -- --profile            tailgate with --cpu-prof, plus a heap snapshot at the idle peak
//                                         (summarise: node --import tsx bench/profile-summary.ts <dir>)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import type { ProxySpec, TargetSpec } from './lib/client.js';
import { cpuSeconds, gatewaySample, running, LoadGen, rssKiB, spawnPinned, stop, waitPort, waitReadyLine, freePort, type Pinned } from './lib/procs.js';
import {
  ALL_PATHS,
  buildTailgate,
  createTailgateDatabase,
  direct,
  ensureGlider,
  ensureGoDevice,
  gliderArgs,
  gliderKind,
  gliderVersion,
  proxyChain,
  proxyChainVersion,
  tailgateKind,
  tailgateMissing,
  type Env,
  type GatewayKind,
  type GliderGateway,
  type PathName,
  type RunningGateway,
  type TailgateGateway,
  type TailgateSetup,
} from './lib/paths.js';
import type { ChurnTrafficResult, RegisterToUsableResult, SetupResult, UsableResult } from './loadgen.js';
import { printTable, writeReadme, type Row, type RunReport } from './lib/report.js';
import { runTailnetOverhead } from './tailnet.js';
import { addRow, measureSetup, measureThroughput, round, type CpuSample, type Measured } from './lib/scenarios.js';

const LOAD_AT_START = os.loadavg().map((v) => Math.round(v * 100) / 100);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ---------------------------------------------------------------- options

// Idle tunnels last: closing 10,000 of them leaves ~30,000 sockets in TIME_WAIT for a minute.
const SCENARIO_GROUPS = ['throughput-1', 'throughput-16', 'setup', 'register-to-usable', 'dropped-under-churn', 'tailnet-overhead', 'idle-rss-per-tunnel'] as const;
type Group = (typeof SCENARIO_GROUPS)[number];
const ALIASES: Record<string, Group> = {
  'setup-rate': 'setup',
  'setup-p50': 'setup',
  'setup-p99': 'setup',
  ...Object.fromEntries(['throughput-1', 'throughput-16', 'setup-rate', 'setup-p50', 'setup-p99'].map((s) => [`tailnet-${s}`, 'tailnet-overhead' as const])),
};

interface Options {
  quick: boolean;
  groups: Group[];
  paths: PathName[];
  device: 'go' | 'glider' | 'node';
  writeReadme: boolean;
  profile: boolean;
  /** Exit non-zero unless every scenario that ran produced tailgate's rows (CI smoke runs). */
  check: boolean;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { quick: false, groups: [...SCENARIO_GROUPS], paths: [...ALL_PATHS], device: 'go', writeReadme: true, profile: false, check: false };
  let partial = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') opts.quick = true;
    else if (a.startsWith('--only')) {
      partial = true;
      opts.groups = [];
      for (const name of value().split(',')) {
        const g = ALIASES[name] ?? ((SCENARIO_GROUPS as readonly string[]).includes(name) ? (name as Group) : undefined);
        if (!g) throw new Error(`unknown scenario ${name}; known: ${[...SCENARIO_GROUPS, ...Object.keys(ALIASES)].join(', ')}`);
        if (!opts.groups.includes(g)) opts.groups.push(g);
      }
    } else if (a.startsWith('--paths')) {
      partial = true;
      opts.paths = value().split(',') as PathName[];
      for (const p of opts.paths) if (!ALL_PATHS.includes(p)) throw new Error(`unknown path ${p}; known: ${ALL_PATHS.join(', ')}`);
    } else if (a.startsWith('--device')) {
      const d = value();
      if (d !== 'go' && d !== 'glider' && d !== 'node') throw new Error('--device is go, glider or node');
      opts.device = d;
    } else if (a === '--no-readme') opts.writeReadme = false;
    else if (a === '--profile') opts.profile = true;
    else if (a === '--check') opts.check = true;
    else if (a === '--help' || a === '-h') {
      const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
      process.stdout.write(lines.slice(0, lines.findIndex((l) => !l.startsWith('//'))).join('\n') + '\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  // README shows full runs only; a smoke or partial run must not replace the published table.
  if (opts.quick || partial || opts.profile) opts.writeReadme = false;
  return opts;
}

// ---------------------------------------------------------------- sizes

interface Sizes {
  throughputBytesEachWay: number;
  throughputRepeats: number;
  setupRepeats: number;
  setupDurationMs: number;
  idleTunnels: number;
  r2uTrials: number;
  gliderRestarts: number;
  churnMs: number;
  tailnetBytesEachWay: number;
  tailnetThroughputRepeats: number;
  tailnetSetupRepeats: number;
  tailnetSetupSliceMs: number;
}

const FULL: Sizes = {
  throughputBytesEachWay: 512 << 20,
  throughputRepeats: 5,
  setupRepeats: 3,
  setupDurationMs: 6_000,
  idleTunnels: 10_000,
  r2uTrials: 40,
  gliderRestarts: 6,
  churnMs: 10_000,
  // Userspace tailscaled moves 50-90 MiB/s here: 256 MiB per run keeps the tailnet group near 2 minutes.
  tailnetBytesEachWay: 128 << 20,
  tailnetThroughputRepeats: 3,
  tailnetSetupRepeats: 3,
  tailnetSetupSliceMs: 2_000,
};
const QUICK: Sizes = {
  throughputBytesEachWay: 128 << 20,
  throughputRepeats: 1,
  setupRepeats: 1,
  setupDurationMs: 1_000,
  idleTunnels: 1_000,
  r2uTrials: 6,
  gliderRestarts: 2,
  churnMs: 2_000,
  tailnetBytesEachWay: 32 << 20,
  tailnetThroughputRepeats: 1,
  tailnetSetupRepeats: 1,
  tailnetSetupSliceMs: 1_000,
};

// ---------------------------------------------------------------- cores

// Two cores. The proxies (gateway under test + device stand-in) share core 0; the traffic endpoints
// (load generator, sink) and this orchestrator share core 1. So `direct` runs one proxy on core 0 and the
// gateway paths run two there: the extra hop's CPU cost is inside the ratio to direct, as it would be on
// any host where gateway and device compete for the same cycles.
const PROXY_CPU = 0;
const ENDPOINT_CPU = 1;

// ---------------------------------------------------------------- helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (bytes: number) => bytes / (1 << 20);

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Ctx {
  opts: Options;
  sizes: Sizes;
  env: Env;
  loadgen: LoadGen;
  sink: Pinned;
  /** The device stand-in's processes (two for the Go device, sharing its port). */
  devices: Pinned[];
  target: TargetSpec;
  kinds: Map<PathName, GatewayKind>;
  rows: Row[];
  details: Record<string, unknown>[];
  log: (s: string) => void;
  /** The scenario group running now (labels profiles). */
  scenario: string;
  versions: Record<string, string>;
}

/** CPU seconds so far of every process on the path (the gateway's own only where there is one). */
function cpuSnapshot(ctx: Ctx, gw: RunningGateway | undefined): CpuSample {
  const sample: CpuSample = {
    device: ctx.devices.reduce((sum, d) => sum + cpuSeconds(d.pid), 0),
    sink: cpuSeconds(ctx.sink.pid),
    loadgen: cpuSeconds(ctx.loadgen.proc.pid),
  };
  return gw?.proc ? { ...sample, ...gatewaySample(gw.proc.pid) } : sample;
}

function addGatewayRow(ctx: Ctx, scenario: string, gw: { path: PathName }, listener: string | undefined, value: number, unit: string): void {
  addRow(ctx, scenario, { path: gw.path, listener: gw.path === 'direct' ? undefined : listener }, value, unit);
}

/**
 * Runs `fn` once per listener, each time on a freshly started gateway, so one listener's lingering
 * connections or garbage never weigh on the next one's numbers.
 */
async function forEachListener(ctx: Ctx, kind: GatewayKind, fn: (gw: RunningGateway, l: RunningGateway['listeners'][number]) => Promise<void>): Promise<void> {
  const listeners = kind.path === 'direct' || kind.path === 'proxy-chain' ? ['http'] : ['http', 'socks5'];
  for (const which of listeners) {
    ctx.env.profileLabel = `${ctx.scenario}-${which}`;
    await withGateway(ctx, kind, async (gw) => {
      const l = gw.listeners.find((x) => x.listener === which);
      if (l) await fn(gw, l);
    });
  }
}

async function withGateway<T>(ctx: Ctx, kind: GatewayKind, fn: (gw: RunningGateway) => Promise<T>): Promise<T | undefined> {
  let gw: RunningGateway | undefined;
  try {
    gw = await kind.start(ctx.env);
    return await fn(gw);
  } catch (err) {
    ctx.log(`  ! ${kind.path}: ${err instanceof Error ? err.message : String(err)}`);
    ctx.details.push({ path: kind.path, error: err instanceof Error ? err.message : String(err) });
    return undefined;
  } finally {
    await gw?.stop();
  }
}

// ---------------------------------------------------------------- scenarios

interface Variant {
  gw: RunningGateway;
  l: RunningGateway['listeners'][number];
}

/**
 * Starts one fresh gateway process per (path, listener), all at once, so that repetitions can be
 * interleaved across paths: background load on this shared machine drifts, and round-robin spreads it
 * over every path instead of charging it to whichever ran at a bad moment. Idle gateways cost no CPU.
 */
async function withAllVariants(ctx: Ctx, fn: (variants: Variant[]) => Promise<void>): Promise<void> {
  const variants: Variant[] = [];
  try {
    for (const kind of ctx.kinds.values()) {
      const listeners = kind.path === 'direct' || kind.path === 'proxy-chain' ? ['http'] : ['http', 'socks5'];
      for (const which of listeners) {
        ctx.env.profileLabel = `${ctx.scenario}-${which}`;
        try {
          const gw = await kind.start(ctx.env);
          const l = gw.listeners.find((x) => x.listener === which);
          if (l) variants.push({ gw, l });
          else await gw.stop();
        } catch (err) {
          ctx.log(`  ! ${kind.path}: ${err instanceof Error ? err.message : String(err)}`);
          ctx.details.push({ scenario: ctx.scenario, path: kind.path, listener: which, error: err instanceof Error ? err.message : String(err) });
        }
      }
    }
    await fn(variants);
  } finally {
    for (const v of variants) await v.gw.stop();
  }
}

function measured(ctx: Ctx, variants: Variant[]): Measured[] {
  return variants.map((v) => ({ path: v.gw.path, listener: v.gw.path === 'direct' ? undefined : v.l.listener, proxy: v.l.proxy, cpu: () => cpuSnapshot(ctx, v.gw) }));
}

async function throughputScenario(ctx: Ctx, tunnels: 1 | 16): Promise<void> {
  const scenario = `throughput-${tunnels}`;
  const repeats = ctx.sizes.throughputRepeats;
  ctx.log(`${scenario}: ${mib(ctx.sizes.throughputBytesEachWay * 2)} MiB per run (half up, half down) over ${tunnels} tunnel(s); median of ${repeats} runs, interleaved across paths`);
  await withAllVariants(ctx, (variants) => measureThroughput(ctx, measured(ctx, variants), { scenario, tunnels, bytesEachWay: ctx.sizes.throughputBytesEachWay, repeats }));
}

async function setupScenario(ctx: Ctx): Promise<void> {
  const repeats = ctx.sizes.setupRepeats;
  const sliceMs = ctx.sizes.setupDurationMs / repeats;
  ctx.log(`setup: concurrency 64, ${repeats} x ${sliceMs} ms per path interleaved across paths, the median slice by rate reported (tunnel + auth + device CONNECT + one small request, key cached)`);
  await withAllVariants(ctx, (variants) =>
    measureSetup(ctx, measured(ctx, variants), {
      names: { rate: 'setup-rate', p50: 'setup-p50', p99: 'setup-p99', details: 'setup' },
      concurrency: 64,
      repeats,
      sliceMs,
      soloMs: ctx.sizes.setupDurationMs / 5,
      warmupTunnels: 512,
    }),
  );
}

async function idleScenario(ctx: Ctx): Promise<void> {
  const n = ctx.sizes.idleTunnels;
  ctx.log(`idle-rss-per-tunnel: ${n} idle tunnels per listener, fresh gateway process each`);
  for (const kind of ctx.kinds.values()) {
    if (kind.path === 'direct') continue; // no gateway process on the direct path
    await forEachListener(ctx, kind, async (gw, l) => {
      const pid = gw.proc!.pid;
      // Warm-up, so lazily created state (pools, caches, JIT) is in the baseline, not in the per-tunnel figure.
      await ctx.loadgen.request<SetupResult>({ type: 'setup', proxy: l.proxy, target: ctx.target, concurrency: 16, maxCount: 256, durationMs: 5_000, warmup: 0 }, 60_000);
      await sleep(1_000);
      const rss0 = rssKiB(pid);
      const r = await ctx.loadgen.request<{ opened: number; failed: number; ms: number; errors: string[] }>(
        { type: 'idle-open', proxy: l.proxy, target: ctx.target, count: n, concurrency: 128, timeoutMs: 120_000, maxFailures: 200 },
        180_000,
      );
      await sleep(2_000);
      const rss1 = rssKiB(pid);
      if (ctx.env.profileDir && gw.path === 'tailgate') await heapSnapshot(pid, ctx.env.profileDir);
      const closed = await ctx.loadgen.request<{ closed: number; stillOpen: number }>({ type: 'idle-close' }, 60_000);
      if (r.opened > 0) addGatewayRow(ctx, 'idle-rss-per-tunnel', gw, l.listener, (rss1 - rss0) / r.opened, 'KiB');
      if (r.failed > 0) ctx.log(`  ! ${gw.path}/${l.listener}: ${r.failed} tunnels failed to open, e.g. ${r.errors.join('; ')}`);
      ctx.details.push({
        scenario: 'idle-rss-per-tunnel',
        path: gw.path,
        listener: l.listener,
        opened: r.opened,
        failed: r.failed,
        openSeconds: round(r.ms / 1000),
        rssBeforeKiB: rss0,
        rssAfterKiB: rss1,
        cutWhileIdle: closed.closed - closed.stillOpen,
      });
    });
  }
}

async function registerToUsableScenario(ctx: Ctx): Promise<void> {
  ctx.log('register-to-usable: POST /register returning -> first successful tunnel with the new key');
  for (const kind of ctx.kinds.values()) {
    if (kind.path === 'tailgate') {
      await withGateway(ctx, kind, async (g) => {
        const gw = g as TailgateGateway;
        const r = await ctx.loadgen.request<RegisterToUsableResult>(
          {
            type: 'register-to-usable',
            api: gw.apiUrl,
            token: gw.adminToken,
            device: { ip: ctx.env.device.host, port: ctx.env.device.port },
            proxies: gw.listeners.map((l) => l.proxy),
            target: ctx.target,
            trials: ctx.sizes.r2uTrials,
            deadlineMs: 5_000,
          },
          120_000,
        );
        for (const [i, st] of r.perProxy.entries()) {
          const listener = gw.listeners[i]!.listener;
          if (st.samplesMs.length > 0) addGatewayRow(ctx, 'register-to-usable', gw, listener, median(st.samplesMs), 'ms');
          if (st.failedTrials > 0) ctx.log(`  ! tailgate/${listener}: ${st.failedTrials} trials never became usable: ${st.errors.join('; ')}`);
          ctx.details.push({
            scenario: 'register-to-usable',
            path: 'tailgate',
            listener,
            samplesMs: st.samplesMs.map((v) => round(v, 2)),
            maxMs: round(Math.max(...st.samplesMs), 2),
            failedTrials: st.failedTrials,
            errors: st.errors,
          });
        }
      });
    } else if (kind.path === 'glider') {
      // glider has no API: a new user means a new command line, i.e. a restart. Measured from the moment
      // the restart begins to the first successful tunnel with the new key.
      await withGateway(ctx, kind, async (g) => {
        const gw = g as GliderGateway;
        const samples: Record<string, number[]> = { http: [], socks5: [] };
        const errors: string[] = [];
        for (let i = 0; i < ctx.sizes.gliderRestarts; i++) {
          const l = gw.listeners[i % gw.listeners.length]!;
          const key = `r2u${randomBytes(8).toString('hex')}`;
          const t0 = performance.timeOrigin + performance.now();
          await gw.restart(key);
          const r = await ctx.loadgen.request<UsableResult>({ type: 'until-usable', proxy: { ...l.proxy, key }, target: ctx.target, deadlineMs: 10_000 }, 30_000);
          if (r.ok) samples[l.listener]!.push(r.okAtWallMs - t0);
          else errors.push(r.lastError);
        }
        for (const l of gw.listeners) {
          const s = samples[l.listener]!;
          if (s.length > 0) addGatewayRow(ctx, 'register-to-usable', gw, l.listener, median(s), 'ms');
          ctx.details.push({ scenario: 'register-to-usable', path: 'glider', listener: l.listener, how: 'restart with the new user (glider has no API)', samplesMs: s.map((v) => round(v, 2)), errors });
        }
      });
    }
  }
}

async function churnScenario(ctx: Ctx): Promise<void> {
  const seconds = ctx.sizes.churnMs / 1000;
  ctx.log(`dropped-under-churn: ${seconds} s of steady traffic (16 long-lived tunnels + 8 setup loops, 10 ms pace) while registrations churn`);
  const traffic = (proxies: ProxySpec[]) =>
    ctx.loadgen.request<ChurnTrafficResult>(
      { type: 'churn-traffic', proxies, target: ctx.target, longLived: 16, setupWorkers: 8, paceMs: 10, durationMs: ctx.sizes.churnMs },
      ctx.sizes.churnMs + 60_000,
    );
  for (const kind of ctx.kinds.values()) {
    if (kind.path === 'tailgate') {
      await withGateway(ctx, kind, async (g) => {
        const gw = g as TailgateGateway;
        const running = traffic(gw.listeners.map((l) => l.proxy));
        const reg = await registrationChurn(ctx, gw, 100, ctx.sizes.churnMs);
        const r = await running;
        for (const [i, st] of r.perProxy.entries()) {
          const listener = gw.listeners[i]!.listener;
          addGatewayRow(ctx, 'dropped-under-churn', gw, listener, st.tunnelsCut + st.setupFailures, 'tunnels');
          ctx.details.push({ scenario: 'dropped-under-churn', path: 'tailgate', listener, ...st, registrations: reg });
        }
      });
    } else if (kind.path === 'glider') {
      // The glider equivalent of a registration is a restart with a new command line; 100 of them per
      // second is not possible, so: the same traffic, one restart in the middle, and what it cut.
      await withGateway(ctx, kind, async (g) => {
        const gw = g as GliderGateway;
        const running = traffic(gw.listeners.map((l) => l.proxy));
        await sleep(ctx.sizes.churnMs / 2);
        const t0 = performance.now();
        await gw.restart(ctx.env.key);
        await waitPort(gw.ports.http, 10_000, gw.proc);
        const restartMs = performance.now() - t0;
        const r = await running;
        for (const [i, st] of r.perProxy.entries()) {
          const listener = gw.listeners[i]!.listener;
          addGatewayRow(ctx, 'dropped-under-churn', gw, listener, st.tunnelsCut + st.setupFailures, 'tunnels');
          ctx.details.push({ scenario: 'dropped-under-churn', path: 'glider', listener, how: '1 restart mid-run (no API; 100 restarts/s impossible)', restartMs: round(restartMs, 1), ...st });
        }
      });
    }
  }
}

/**
 * Scenario 5: tailgate vs tailscaled's own SOCKS5 server to the same device over a real (offline) tailnet,
 * in a private network namespace of its own (bench/tailnet.ts).
 */
async function tailnetScenario(ctx: Ctx): Promise<void> {
  if (!ctx.kinds.has('tailgate')) {
    ctx.log('tailnet-overhead: skipped (tailgate is not among the paths of this run)');
    return;
  }
  ctx.log('tailnet-overhead: tailgate vs tailscaled’s own SOCKS5 to the same device, real headscale + tailscaled in a private network namespace');
  try {
    const outcome = await runTailnetOverhead(
      {
        repo: ctx.env.repo,
        logDir: ctx.env.logDir,
        deviceBin: await ensureGoDevice(ctx.env.repo),
        proxyCpu: PROXY_CPU,
        endpointCpu: ENDPOINT_CPU,
        bytesEachWay: ctx.sizes.tailnetBytesEachWay,
        throughputRepeats: ctx.sizes.tailnetThroughputRepeats,
        setupRepeats: ctx.sizes.tailnetSetupRepeats,
        setupSliceMs: ctx.sizes.tailnetSetupSliceMs,
        setupConcurrency: 64,
        setupWarmupTunnels: ctx.opts.quick ? 256 : 1024,
      },
      (line) => ctx.log(`  ${line}`),
    );
    ctx.rows.push(...outcome.rows);
    ctx.details.push(...outcome.details);
    Object.assign(ctx.versions, outcome.versions);
  } catch (err) {
    ctx.log(`  ! tailnet-overhead: ${(err as Error).message}`);
    ctx.details.push({ scenario: 'tailnet-overhead', error: (err as Error).message });
  }
}

/** POSTs `perSecond` registrations per second for `ms`, paced on a fixed schedule, at most 64 in flight. */
async function registrationChurn(ctx: Ctx, gw: TailgateGateway, perSecond: number, ms: number) {
  const total = Math.round((perSecond * ms) / 1000);
  const interval = 1000 / perSecond;
  const tag = randomBytes(4).toString('hex');
  let ok = 0;
  let failed = 0;
  let skipped = 0;
  let inFlight = 0;
  const latencies: number[] = [];
  const errors: string[] = [];
  const pending: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    if (inFlight >= 64) {
      skipped++;
      continue;
    }
    // Every tenth registration re-registers the key the traffic uses (same binding): the case most
    // likely to disturb open tunnels. The rest bind fresh keys.
    const key = i % 10 === 9 ? ctx.env.key : `churn-${tag}-${i}`;
    inFlight++;
    const t = performance.now();
    pending.push(
      fetch(`${gw.apiUrl}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.adminToken}` },
        body: JSON.stringify({ key, ip: ctx.env.device.host, port: ctx.env.device.port }),
        signal: AbortSignal.timeout(5_000),
      })
        .then(async (res) => {
          await res.arrayBuffer();
          if (res.ok) ok++;
          else {
            failed++;
            if (errors.length < 5) errors.push(`HTTP ${res.status}`);
          }
          latencies.push(performance.now() - t);
        })
        .catch((err: Error) => {
          failed++;
          if (errors.length < 5) errors.push(err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message);
        })
        .finally(() => inFlight--),
    );
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    attempted: total,
    ok,
    failed,
    skippedBackpressure: skipped,
    perSecondAchieved: round(ok / elapsed, 1),
    p50Ms: round(latencies[Math.floor(latencies.length * 0.5)] ?? NaN, 2),
    p99Ms: round(latencies[Math.floor(latencies.length * 0.99)] ?? NaN, 2),
    errors,
  };
}

// ---------------------------------------------------------------- main

class UsageError extends Error {}

async function main(): Promise<void> {
  let opts: Options;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const sizes = { ...(opts.quick ? QUICK : FULL) };
  const t0 = performance.now();
  const log = (s: string) => process.stdout.write(`${s}\n`);

  // 10,000 idle tunnels need ~20,000 descriptors in the gateway and in the device proxy (two per tunnel):
  // raise the limit for this process, which every child inherits. Where the hard limit cannot be raised
  // (no CAP_SYS_RESOURCE), measure at the largest count that fits and say so.
  const fdLimit = raiseFdLimit(262_144);
  const fitting = Math.floor((fdLimit - 200) / 2 / 100) * 100;
  if (fitting < sizes.idleTunnels) {
    log(`! open-file hard limit is ${fdLimit} and cannot be raised here: idle-rss-per-tunnel measured at ${fitting} tunnels instead of ${sizes.idleTunnels}`);
    sizes.idleTunnels = fitting;
  }
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(ENDPOINT_CPU), String(process.pid)], { stdio: 'ignore' });
  } catch {
    log('! taskset failed: processes are not pinned');
  }

  const logDir = mkdtempSync(path.join(os.tmpdir(), 'tailgate-bench-'));
  log(`tailgate bench (${opts.quick ? 'quick' : 'full'}); process logs in ${logDir}`);

  const skipped: Record<string, string> = {};
  const versions: Record<string, string> = { node: process.version };

  // Tools first: a missing baseline is reported, not fatal.
  let gliderBin: string | undefined;
  try {
    gliderBin = await ensureGlider(repo);
    versions.glider = await gliderVersion(gliderBin);
  } catch (err) {
    skipped.glider = `glider could not be built: ${(err as Error).message}`;
  }
  versions.gost = 'unavailable: the Go module proxy here refuses github.com/go-gost/gost and github.com/go-gost/x (403), see bench/README.md';
  versions['proxy-chain'] = proxyChainVersion(repo);

  let tailgateSetup: TailgateSetup | undefined;
  // Interrupted: no child may outlive the run, and the throw-away database goes too.
  const abort = (signal: NodeJS.Signals) => {
    for (const child of running) child.kill('SIGKILL');
    const dropped = tailgateSetup?.dropDatabase() ?? Promise.resolve();
    void dropped.catch(() => {}).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', abort);
  process.once('SIGTERM', abort);
  if (opts.paths.includes('tailgate')) {
    const missing = tailgateMissing(repo);
    if (missing.length > 0) skipped.tailgate = `not built yet (missing ${missing.join(', ')})`;
    else {
      try {
        await buildTailgate(repo);
        tailgateSetup = await createTailgateDatabase();
        versions.tailgate = `${JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')).version} (${gitHead()})`;
      } catch (err) {
        skipped.tailgate = (err as Error).message;
      }
    }
  }

  const endpointsEnv = { ...process.env };
  const sink = spawnPinned('sink', ENDPOINT_CPU, process.execPath, ['--import', 'tsx', 'bench/servers/sink.ts', String(await freePort())], { cwd: repo, pipeStdout: true, logFile: path.join(logDir, 'sink.log') });
  const devices: Pinned[] = [];
  let loadgen: LoadGen | undefined;
  try {
    const { port: sinkPort } = await waitReadyLine(sink, 20_000);

    let devicePort: number;
    if (opts.device === 'go') {
      // Two processes on one SO_REUSEPORT port: 10,000 tunnels need more descriptors than one may hold here.
      const bin = await ensureGoDevice(repo);
      const first = spawnPinned('device', PROXY_CPU, bin, [String(await freePort())], { pipeStdout: true, logFile: path.join(logDir, 'device.log') });
      devices.push(first);
      devicePort = (await waitReadyLine(first, 10_000)).port;
      const second = spawnPinned('device', PROXY_CPU, bin, [String(devicePort)], { pipeStdout: true, logFile: path.join(logDir, 'device.log') });
      devices.push(second);
      await waitReadyLine(second, 10_000);
      versions.device = 'bench/device/main.go (minimal Go CONNECT proxy: splice, half-close; 2 processes on one SO_REUSEPORT port)';
    } else if (opts.device === 'glider') {
      if (!gliderBin) throw new Error(`--device glider needs glider: ${skipped.glider}`);
      devicePort = await freePort();
      const device = spawnPinned('device', PROXY_CPU, gliderBin, gliderArgs([`http://127.0.0.1:${devicePort}`]), { logFile: path.join(logDir, 'device.log') });
      devices.push(device);
      await waitPort(devicePort, 10_000, device);
      versions.device = `glider ${versions.glider} as a plain HTTP CONNECT proxy (no auth, no forwarder)`;
    } else {
      const device = spawnPinned('device', PROXY_CPU, process.execPath, ['--import', 'tsx', 'bench/servers/node-device.ts', String(await freePort())], { cwd: repo, pipeStdout: true, logFile: path.join(logDir, 'device.log') });
      devices.push(device);
      devicePort = (await waitReadyLine(device, 20_000)).port;
      versions.device = 'bench/servers/node-device.ts (minimal Node CONNECT proxy)';
    }
    loadgen = await LoadGen.start(ENDPOINT_CPU, repo, endpointsEnv);

    const profileDir = opts.profile ? path.join(logDir, 'profiles') : undefined;
    if (profileDir) {
      mkdirSync(profileDir, { recursive: true });
      log(`profiles go to ${profileDir}`);
    }
    const env: Env = { repo, logDir, profileDir, proxyCpu: PROXY_CPU, device: { host: '127.0.0.1', port: devicePort }, key: `bench${randomBytes(12).toString('hex')}` };
    const kinds = new Map<PathName, GatewayKind>();
    for (const p of opts.paths) {
      if (p === 'direct') kinds.set(p, direct);
      else if (p === 'tailgate' && tailgateSetup) kinds.set(p, tailgateKind(tailgateSetup));
      else if (p === 'glider' && gliderBin) kinds.set(p, gliderKind(gliderBin));
      else if (p === 'proxy-chain') kinds.set(p, proxyChain);
    }
    for (const [p, why] of Object.entries(skipped)) log(`! skipping ${p}: ${why}`);

    const ctx: Ctx = { opts, sizes, env, loadgen, sink, devices, target: { host: '127.0.0.1', port: sinkPort }, kinds, rows: [], details: [], log, scenario: '', versions };
    for (const g of opts.groups) {
      const ts = performance.now();
      ctx.scenario = g;
      ctx.env.profileLabel = g;
      if (g === 'throughput-1') await throughputScenario(ctx, 1);
      else if (g === 'throughput-16') await throughputScenario(ctx, 16);
      else if (g === 'setup') await setupScenario(ctx);
      else if (g === 'idle-rss-per-tunnel') await idleScenario(ctx);
      else if (g === 'register-to-usable') await registerToUsableScenario(ctx);
      else if (g === 'dropped-under-churn') await churnScenario(ctx);
      else if (g === 'tailnet-overhead') await tailnetScenario(ctx);
      log(`  (${g}: ${round((performance.now() - ts) / 1000, 1)} s)`);
    }

    const report: RunReport = {
      machine: machineInfo(opts, fdLimit, sizes.idleTunnels),
      versions,
      results: ctx.rows,
    };
    const stamp = new Date().toISOString().replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
    const resultsDir = path.join(repo, 'bench/results');
    mkdirSync(resultsDir, { recursive: true });
    const file = path.join(resultsDir, `${stamp}.json`);
    writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
    writeFileSync(path.join(resultsDir, `${stamp}.details.json`), JSON.stringify({ skipped, sizes, details: ctx.details }, null, 2) + '\n');
    log('');
    printTable(report, log);
    log(`\nwrote ${path.relative(repo, file)} (+ .details.json) in ${round((performance.now() - t0) / 1000, 1)} s`);
    if (opts.writeReadme) {
      writeReadme(path.join(repo, 'bench/README.md'), report, path.relative(path.join(repo, 'bench'), file), skipped, ctx.details);
      log('updated bench/README.md');
    }
    if (opts.check) {
      const problems = checkRun(opts.groups, ctx.rows, skipped);
      if (problems.length > 0) throw new Error(`--check: ${problems.join('; ')}`);
      log('--check: every scenario produced tailgate’s numbers');
    }
  } finally {
    await loadgen?.close();
    for (const d of devices) await stop(d);
    await stop(sink);
    await tailgateSetup?.dropDatabase().catch((err: Error) => log(`! could not drop the bench database: ${err.message}`));
  }
}

/**
 * What a smoke run must show: tailgate measured on both listeners in every scenario that ran (a path that
 * failed is only logged by the scenarios, so a broken data plane would otherwise pass), and no tunnel
 * dropped under registration churn. No timing is judged.
 */
function checkRun(groups: Group[], rows: Row[], skipped: Record<string, string>): string[] {
  if (skipped.tailgate) return [`tailgate was not run: ${skipped.tailgate}`];
  const expected: Record<Group, string[]> = {
    'throughput-1': ['throughput-1'],
    'throughput-16': ['throughput-16'],
    setup: ['setup-rate', 'setup-p50', 'setup-p99'],
    'register-to-usable': ['register-to-usable'],
    'dropped-under-churn': ['dropped-under-churn'],
    'tailnet-overhead': ['tailnet-throughput-1', 'tailnet-throughput-16', 'tailnet-setup-rate'],
    'idle-rss-per-tunnel': ['idle-rss-per-tunnel'],
  };
  const problems: string[] = [];
  for (const scenario of groups.flatMap((g) => expected[g])) {
    for (const listener of ['http', 'socks5']) {
      const row = rows.find((r) => r.scenario === scenario && r.path === 'tailgate' && r.listener === listener);
      if (!row || !Number.isFinite(row.value)) problems.push(`no ${scenario} for tailgate/${listener}`);
      else if (scenario === 'dropped-under-churn' && row.value !== 0) problems.push(`${row.value} tunnels dropped under churn on ${listener}`);
    }
    if (scenario.startsWith('tailnet-') && !rows.some((r) => r.scenario === scenario && r.path === 'tailscale-socks5')) problems.push(`no ${scenario} for the tailscale-socks5 baseline`);
  }
  return problems;
}

/** Asks a tailgate started with --heapsnapshot-signal for a snapshot and waits until it is written. */
async function heapSnapshot(pid: number, dir: string): Promise<void> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    await sleep(500);
    const fresh = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    // The file grows while V8 writes it; done when its size holds still.
    if (fresh.length > 0) {
      const f = path.join(dir, fresh[0]!);
      const a = statSync(f).size;
      await sleep(1_000);
      if (statSync(f).size === a && a > 0) return;
    }
  }
}

/** Raises RLIMIT_NOFILE (soft and hard) as far as allowed; returns the hard limit now in force. */
function raiseFdLimit(want: number): number {
  const pid = String(process.pid);
  try {
    execFileSync('prlimit', ['--pid', pid, `--nofile=${want}:${want}`], { stdio: 'ignore' });
  } catch {
    // Not permitted: fall back to soft = hard below.
  }
  const hard = Number(execFileSync('prlimit', ['--pid', pid, '--nofile', '--output=HARD', '--noheadings'], { encoding: 'utf8' }).trim());
  try {
    execFileSync('prlimit', ['--pid', pid, `--nofile=${hard}:${hard}`], { stdio: 'ignore' });
  } catch {
    // keep whatever soft limit we have
  }
  return hard;
}

function gitHead(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

function machineInfo(opts: Options, fdHardLimit: number, idleTunnels: number): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    platform: `${os.platform()} ${os.arch()}`,
    network: 'loopback (127.0.0.1) only',
    pinning: {
      [`cpu${PROXY_CPU}`]: 'gateway under test + device proxy stand-in',
      [`cpu${ENDPOINT_CPU}`]: 'load generator + sink + orchestrator (registrations)',
      'tailnet-*': `cpu${PROXY_CPU} = tailgate + its tailscaled + the device's tailscaled and proxy; cpu${ENDPOINT_CPU} = load generator + sink + headscale`,
    },
    mode: opts.quick ? 'quick' : 'full',
    // Other work on the machine during the run skews every number: say how busy it was.
    loadAverageAtStart: LOAD_AT_START,
    loadAverageAtEnd: os.loadavg().map((v) => round(v)),
    openFileHardLimit: fdHardLimit,
    idleTunnelsMeasured: idleTunnels,
  };
}

main().catch((err) => {
  if (err instanceof UsageError) {
    process.stderr.write(`bench: ${err.message} (see --help)\n`);
    process.exit(2);
  }
  process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
