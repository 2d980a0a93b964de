// What every scenario of the loopback benchmark works with: the run's context, the scenario table's entry
// type, and the ways gateways are started around a measurement (one at a time, or all at once so that
// repetitions can be interleaved across paths).
import type { TargetSpec } from './client.js';
import type { Options, Sizes } from './options.js';
import type { Env, GatewayKind, Listener, PathName, RunningGateway } from './paths.js';
import { cpuSeconds, gatewaySample, processTreeStat, procStat, type LoadGen, type Pinned } from './procs.js';
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
  | 'tailgate'
  /** this checkout's tailgate, gost and glider, which the scenario starts in its own way (the `scale` group: both cores) */
  | 'tailgate-gost-glider';

/** Which paths each need admits, and what to say when a run has none of them. */
export const PATH_NEEDS: Record<PathNeed, { admits(kind: GatewayKind): boolean; none: string }> = {
  all: { admits: () => true, none: 'no paths in this run' },
  gateway: { admits: (k) => k.family !== 'direct', none: 'no path of this run has a gateway process' },
  'new-keys': { admits: (k) => k.family === 'tailgate' || k.family === 'gost' || k.family === 'glider', none: 'none of tailgate, gost, glider is among the paths of this run' },
  'both-listeners': { admits: (k) => k.listeners.includes('http') && k.listeners.includes('socks5'), none: 'no path of this run has both an HTTP and a SOCKS5 listener' },
  'admin-api': { admits: (k) => k.family === 'tailgate', none: 'no tailgate build is among the paths of this run' },
  tailgate: { admits: (k) => k.path === 'tailgate', none: 'tailgate is not among the paths of this run' },
  'tailgate-gost-glider': { admits: (k) => k.path === 'tailgate' || k.family === 'gost' || k.family === 'glider', none: 'none of tailgate, gost, glider is among the paths of this run' },
};

/** One entry of the scenario table (bench/scenarios/index.ts). */
export interface Scenario {
  /** The name `--only` takes (any of its rows is accepted there too). */
  name: string;
  /** A name `--only` takes for this scenario together with the others of the same group. */
  group?: string;
  /** Not part of a full run, whose 10 minutes it would take most of: `--only <name>`, `--all` or `--quick` run it. */
  ownRun?: boolean;
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
  /** --check: the paths whose rows the driver requires; default `tailgate` (and the --baseline-ref build where it runs). */
  checkPaths?: readonly string[];
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
  if (!gw?.proc) return sample;
  // `gatewayPrimary`: the first process alone, which for a tailgate with workers accepts and hands over every connection.
  return { ...sample, ...gatewaySample(processTreeStat(gw.proc.pid)), gatewayPrimary: procStat(gw.proc.pid).cpuSeconds };
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
  await withAllEntrants(ctx, kinds.map((kind) => ({ kind, path: kind.path, env: ctx.env })), fn);
}

/** One gateway a scenario starts: its kind, the path its rows carry and the environment it starts in (cores, workers). */
export interface Entrant {
  kind: GatewayKind;
  path: string;
  env: Env;
  /** Which of the kind's listeners to measure; all when absent. */
  listeners?: readonly Listener[];
  /** One process serves every listener measured, instead of a fresh process per listener. */
  oneProcess?: boolean;
}

/**
 * withAllVariants for gateways started in environments of their own, several of them possibly of one kind. With
 * `together` they all start at once: a tailgate with workers takes seconds to start on this busy machine.
 */
export async function withAllEntrants(ctx: Ctx, entrants: Entrant[], fn: (paths: Measured[]) => Promise<void>, opts: { together?: boolean } = {}): Promise<void> {
  type Variant = { path: string; gw: RunningGateway; l: RunningGateway['listeners'][number] };
  const variants: Variant[] = [];
  const starts = entrants.flatMap(({ kind, path, env, listeners = kind.listeners, oneProcess }) =>
    (oneProcess ? [listeners] : listeners.map((which) => [which])).map((served) => {
      // Two entrants of one kind would otherwise write their profiles to the same file.
      const label = `${ctx.scenario}-${served.join('-')}${path === kind.path ? '' : `-${path}`}`;
      return { kind, path, served, env: { ...env, profileLabel: label } };
    }),
  );
  const startOne = async ({ kind, path, served, env }: (typeof starts)[number]): Promise<Variant[]> => {
    try {
      const gw: RunningGateway = await kind.start(env);
      const found = gw.listeners.filter((l) => served.includes(l.listener)).map((l) => ({ path, gw, l }));
      if (found.length === 0) await gw.stop();
      return found;
    } catch (err) {
      ctx.log(`  ! ${path}: ${message(err)}`);
      ctx.details.push({ scenario: ctx.scenario, path, listener: served.join(','), error: message(err) });
      return [];
    }
  };
  try {
    if (opts.together) {
      for (const vs of await Promise.all(starts.map(startOne))) variants.push(...vs);
    } else {
      for (const one of starts) variants.push(...(await startOne(one)));
    }
    await fn(variants.map(({ path, gw, l }) => ({ path, listener: path === 'direct' ? undefined : l.listener, proxy: l.proxy, cpu: () => cpuSnapshot(ctx, gw) })));
  } finally {
    // Together: a gateway with workers takes seconds to drain them, and nothing is measured any more.
    await Promise.all([...new Set(variants.map((v) => v.gw))].map((gw) => gw.stop()));
  }
}
