// What every scenario of the loopback benchmark works with: the run's context, the scenario table's entry
// type, and the ways gateways are started around a measurement (one at a time, or all at once so that
// repetitions can be interleaved across paths).
import type { TargetSpec } from './client.js';
import type { Options, Sizes } from './options.js';
import type { Env, GatewayKind, Listener, PathName, RunningGateway } from './paths.js';
import { cpuSeconds, gatewaySample, processTreeStat, type LoadGen, type Pinned } from './procs.js';
import type { Row } from './report.js';
import { addRow, type CpuSample, type Measured } from './measure.js';

// Two cores. The proxies (gateway under test + device stand-in) share core 0; the traffic endpoints
// (load generator, sink) and this orchestrator share core 1. So `direct` runs one proxy on core 0 and the
// gateway paths run two there: the extra hop's CPU cost is inside the ratio to direct, as it would be on
// any host where gateway and device compete for the same cycles.
export const PROXY_CPU = 0;
export const ENDPOINT_CPU = 1;

export interface Ctx {
  opts: Options;
  sizes: Sizes;
  env: Env;
  loadgen: LoadGen;
  sink: Pinned;
  /** The device stand-in's processes (two for the Go device, sharing its port). */
  devices: Pinned[];
  target: TargetSpec;
  rows: Row[];
  details: Record<string, unknown>[];
  log: (s: string) => void;
  /** The scenario running now (labels profiles). */
  scenario: string;
  versions: Record<string, string>;
}

/** Which of the run's paths a scenario measures. */
export type PathNeed =
  /** every path */
  | 'all'
  /** every path with a gateway process (not `direct`) */
  | 'gateway'
  /** paths that can take a new key while traffic flows: tailgate and gost through their APIs, glider by restarting */
  | 'new-keys'
  /** paths with both an HTTP and a SOCKS5 listener (tailgate builds, gost, glider), for attacks on both ports at once */
  | 'both-listeners'
  /** tailgate builds (this checkout's and a --baseline-ref one): devices, pools and keys made through the admin API */
  | 'admin-api'
  /** only this checkout's tailgate, which the scenario starts itself (the run's gateways are not used) */
  | 'tailgate';

/** Which paths each need admits, and what to say when a run has none of them. */
export const PATH_NEEDS: Record<PathNeed, { admits(kind: GatewayKind): boolean; none: string }> = {
  all: { admits: () => true, none: 'no paths in this run' },
  gateway: { admits: (k) => k.family !== 'direct', none: 'no path of this run has a gateway process' },
  'new-keys': { admits: (k) => k.family === 'tailgate' || k.family === 'gost' || k.family === 'glider', none: 'none of tailgate, gost, glider is among the paths of this run' },
  'both-listeners': { admits: (k) => k.listeners.includes('http') && k.listeners.includes('socks5'), none: 'no path of this run has both an HTTP and a SOCKS5 listener' },
  'admin-api': { admits: (k) => k.family === 'tailgate', none: 'no tailgate build is among the paths of this run' },
  tailgate: { admits: (k) => k.path === 'tailgate', none: 'tailgate is not among the paths of this run' },
};

/** One entry of the scenario table (bench/scenarios/index.ts). */
export interface Scenario {
  /** The name `--only` takes (any of its rows is accepted there too). */
  name: string;
  /** The result rows (their `scenario` field) it produces for each path it measures. */
  rows: readonly string[];
  needs: {
    paths: PathNeed;
    /** Set when it needs root: why. */
    root?: string;
  };
  /** Measures `kinds` (the run's paths that `needs.paths` admits, never empty) and adds rows and details to `ctx`. */
  run(ctx: Ctx, kinds: GatewayKind[]): Promise<void>;
  /** --check: what is wrong with its rows beyond a missing tailgate row (which the driver checks itself). */
  check?(rows: Row[]): string[];
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const mib = (bytes: number) => bytes / (1 << 20);

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * CPU seconds so far of every process on the path (the gateway's own only where there is one). A gateway's figure is
 * its whole process tree: a tailgate with worker processes is the primary and every worker.
 */
export function cpuSnapshot(ctx: Ctx, gw: RunningGateway | undefined, devices: readonly Pinned[] = ctx.devices): CpuSample {
  const sample: CpuSample = {
    device: devices.reduce((sum, d) => sum + cpuSeconds(d.pid), 0),
    sink: cpuSeconds(ctx.sink.pid),
    loadgen: cpuSeconds(ctx.loadgen.proc.pid),
  };
  return gw?.proc ? { ...sample, ...gatewaySample(processTreeStat(gw.proc.pid)) } : sample;
}

export function addGatewayRow(ctx: Ctx, scenario: string, gw: { path: PathName }, listener: string | undefined, value: number, unit: string): void {
  addRow(ctx, scenario, { path: gw.path, listener: gw.path === 'direct' ? undefined : listener }, value, unit);
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Starts one gateway of `kind`, runs `fn` on it and stops it; a failure is logged and recorded, not thrown. */
export async function withGateway<G extends RunningGateway, T>(ctx: Ctx, kind: { path: PathName; start(env: Env): Promise<G> }, fn: (gw: G) => Promise<T>): Promise<T | undefined> {
  let gw: G | undefined;
  try {
    gw = await kind.start(ctx.env);
    return await fn(gw);
  } catch (err) {
    ctx.log(`  ! ${kind.path}: ${message(err)}`);
    ctx.details.push({ path: kind.path, error: message(err) });
    return undefined;
  } finally {
    await gw?.stop();
  }
}

/**
 * Runs `fn` once per listener, each time on a freshly started gateway, so one listener's lingering
 * connections or garbage never weigh on the next one's numbers.
 */
export async function forEachListener(
  ctx: Ctx,
  kind: GatewayKind,
  fn: (gw: RunningGateway, l: RunningGateway['listeners'][number]) => Promise<void>,
  only?: readonly Listener[],
): Promise<void> {
  for (const which of kind.listeners) {
    if (only !== undefined && !only.includes(which)) continue;
    ctx.env.profileLabel = `${ctx.scenario}-${which}`;
    await withGateway(ctx, kind, async (gw) => {
      const l = gw.listeners.find((x) => x.listener === which);
      if (l) await fn(gw, l);
    });
  }
}

/**
 * Starts one fresh gateway process per (path, listener), all at once, so that repetitions can be
 * interleaved across paths: background load on this shared machine drifts, and round-robin spreads it
 * over every path instead of charging it to whichever ran at a bad moment. Idle gateways cost no CPU.
 */
export async function withAllVariants(ctx: Ctx, kinds: GatewayKind[], fn: (paths: Measured[]) => Promise<void>): Promise<void> {
  const variants: { gw: RunningGateway; l: RunningGateway['listeners'][number] }[] = [];
  try {
    for (const kind of kinds) {
      for (const which of kind.listeners) {
        ctx.env.profileLabel = `${ctx.scenario}-${which}`;
        try {
          const gw: RunningGateway = await kind.start(ctx.env);
          const l = gw.listeners.find((x) => x.listener === which);
          if (l) variants.push({ gw, l });
          else await gw.stop();
        } catch (err) {
          ctx.log(`  ! ${kind.path}: ${message(err)}`);
          ctx.details.push({ scenario: ctx.scenario, path: kind.path, listener: which, error: message(err) });
        }
      }
    }
    await fn(variants.map(({ gw, l }) => ({ path: gw.path, listener: gw.path === 'direct' ? undefined : l.listener, proxy: l.proxy, cpu: () => cpuSnapshot(ctx, gw) })));
  } finally {
    for (const v of variants) await v.gw.stop();
  }
}
