// The measurements shared by the loopback benchmark (bench/run.ts) and the tailnet one (bench/tailnet.ts):
// throughput and tunnel setup over a set of paths, repetitions interleaved across paths so that drifting
// background load on this shared machine is spread over every path instead of landing on one.
import type { ProxySpec, TargetSpec } from './client.js';
import type { LoadGen } from './procs.js';
import type { Row } from './report.js';
import type { SetupResult, ThroughputResult } from '../loadgen.js';

/** CPU seconds so far per process group; `gateway` and `device` feed the per-GiB / per-tunnel figures. */
export type CpuSample = Record<string, number>;

export interface Measured {
  path: string;
  /** Which listener of the gateway the client used; absent where there is no gateway of ours to choose from. */
  listener?: string;
  /** Which of several keys on the same listener (setup-pool: `single`, `pool100`); the rows say it in their names. */
  variant?: string;
  proxy: ProxySpec;
  cpu(): CpuSample;
}

export interface MeasureCtx {
  loadgen: LoadGen;
  target: TargetSpec;
  rows: Row[];
  details: Record<string, unknown>[];
  log(s: string): void;
}

export const round = (v: number, digits = 2) => Math.round(v * 10 ** digits) / 10 ** digits;
const mib = (bytes: number) => bytes / (1 << 20);
export const measuredName = (m: { path: string; listener?: string; variant?: string }) =>
  (m.listener ? `${m.path}/${m.listener}` : m.path) + (m.variant ? ` ${m.variant}` : '');

export function addRow(ctx: MeasureCtx, scenario: string, m: { path: string; listener?: string }, value: number, unit: string): void {
  const row: Row = { scenario, path: m.path, value: round(value, 3), unit };
  if (m.listener !== undefined) row.listener = m.listener;
  ctx.rows.push(row);
  ctx.log(`  ${scenario.padEnd(22)} ${measuredName(m).padEnd(24)} ${String(row.value).padStart(10)} ${unit}`);
}

function cpuDelta(a: CpuSample, b: CpuSample): CpuSample {
  const out: CpuSample = {};
  for (const k of Object.keys(b)) out[k] = round(b[k]! - (a[k] ?? 0));
  return out;
}

export interface ThroughputPlan {
  scenario: string;
  tunnels: number;
  bytesEachWay: number;
  repeats: number;
}

/** MiB/s through `tunnels` tunnels, half up then half down; the median of `repeats` interleaved runs per path. */
export async function measureThroughput(ctx: MeasureCtx, paths: Measured[], plan: ThroughputPlan): Promise<void> {
  const { scenario, tunnels } = plan;
  type Run = { MiBps: number; upMiBps: number; downMiBps: number; cpuSeconds: CpuSample; gatewayCpuMsPerGiB?: number; deviceCpuMsPerGiB?: number };
  const runs = new Map<Measured, Run[]>(paths.map((m) => [m, []]));
  const failed = new Set<Measured>();
  for (let rep = 0; rep < plan.repeats; rep++) {
    for (const m of paths) {
      if (failed.has(m)) continue;
      const before = m.cpu();
      const r = await ctx.loadgen.request<ThroughputResult>(
        { type: 'throughput', proxy: m.proxy, target: ctx.target, tunnels, bytesEachWay: plan.bytesEachWay, timeoutMs: 240_000 },
        600_000,
      );
      const cpu = cpuDelta(before, m.cpu());
      if (r.errors.length > 0 || r.upMs === 0) {
        ctx.log(`  ! ${measuredName(m)}: ${r.errors.join('; ')}`);
        ctx.details.push({ scenario, path: m.path, listener: m.listener, errors: r.errors });
        failed.add(m);
        continue;
      }
      const total = r.upBytes + r.downBytes;
      const perGiB = (seconds: number | undefined) => (seconds === undefined ? undefined : round((seconds * 1000) / (total / (1 << 30)), 1));
      runs.get(m)!.push({
        MiBps: mib(total) / ((r.upMs + r.downMs) / 1000),
        upMiBps: round(mib(r.upBytes) / (r.upMs / 1000)),
        downMiBps: round(mib(r.downBytes) / (r.downMs / 1000)),
        cpuSeconds: cpu,
        gatewayCpuMsPerGiB: perGiB(cpu.gateway),
        deviceCpuMsPerGiB: perGiB(cpu.device),
      });
    }
  }
  for (const m of paths) {
    const rs = runs.get(m)!;
    if (failed.has(m) || rs.length === 0) continue;
    const mid = [...rs].sort((a, b) => a.MiBps - b.MiBps)[rs.length >> 1]!;
    addRow(ctx, scenario, m, mid.MiBps, 'MiB/s');
    ctx.details.push({ scenario, path: m.path, listener: m.listener, ...mid, MiBps: round(mid.MiBps), allRunsMiBps: rs.map((x) => round(x.MiBps)) });
  }
}

/** Row names for the rate and the two percentiles, and the details' scenario label. */
export interface SetupNames {
  rate: string;
  p50: string;
  p99: string;
  details: string;
  cpu?: string;
}

export interface SetupPlan {
  /** The same for every path, or per path (several keys on one listener, told apart by `variant`). */
  names: SetupNames | ((m: Measured) => SetupNames);
  concurrency: number;
  repeats: number;
  sliceMs: number;
  /** Length of the concurrency-1 run that shows what a hop costs without queueing. */
  soloMs: number;
  warmupTunnels: number;
  /** The paths in the order round `round` (from 0) runs them, each exactly once; default: as given, every round. */
  order?: (round: number) => Measured[];
  /** Runs each recorded run of `m` (the slices and the concurrency-1 run, not the warm-up): to set up a condition around it. */
  within?: <T>(m: Measured, run: () => Promise<T>) => Promise<T>;
}

/** What measureSetup found for one path, for figures that compare paths (the rows are added already). */
export interface SetupOutcome {
  /** The median slice's tunnels per second. */
  rate: number;
  /** The gateway's CPU µs per tunnel, the median over the slices; undefined without a gateway process. */
  cpuUsPerTunnel: number | undefined;
  /** Every slice in the order they ran: slice i of every path ran in the same round. */
  slices: { rate: number; cpuUsPerTunnel: number | undefined; deviceCpuUsPerTunnel: number }[];
}

/** Tunnels per second at fixed concurrency and their setup latencies: the median slice of `repeats` interleaved ones. */
export async function measureSetup(ctx: MeasureCtx, paths: Measured[], plan: SetupPlan): Promise<Map<Measured, SetupOutcome>> {
  const setup = (m: Measured, concurrency: number, maxCount: number, durationMs: number) =>
    ctx.loadgen.request<SetupResult>({ type: 'setup', proxy: m.proxy, target: ctx.target, concurrency, maxCount, durationMs, warmup: 0 }, durationMs + 120_000);
  // Key cached, JIT warm: not recorded.
  for (const m of paths) await setup(m, plan.concurrency, plan.warmupTunnels, 10_000);
  type Slice = { rate: number; r: SetupResult; cpu: CpuSample };
  const slices = new Map<Measured, Slice[]>(paths.map((m) => [m, []]));
  for (let rep = 0; rep < plan.repeats; rep++) {
    for (const m of plan.order?.(rep) ?? paths) {
      const slice = async () => {
        const before = m.cpu();
        const r = await setup(m, plan.concurrency, 500_000, plan.sliceMs);
        slices.get(m)!.push({ rate: r.count / (r.elapsedMs / 1000), r, cpu: cpuDelta(before, m.cpu()) });
      };
      await (plan.within ? plan.within(m, slice) : slice());
    }
  }
  const outcomes = new Map<Measured, SetupOutcome>();
  for (const m of paths) {
    const names = typeof plan.names === 'function' ? plan.names(m) : plan.names;
    // At high concurrency the latency is mostly queueing (Little's law: concurrency / rate). One tunnel at a
    // time shows what a hop itself adds; kept in the details file.
    const soloRun = async () => {
      const before = m.cpu();
      const r = await setup(m, 1, 5_000, plan.soloMs);
      return { solo: r, soloCpu: cpuDelta(before, m.cpu()) };
    };
    const { solo, soloCpu } = await (plan.within ? plan.within(m, soloRun) : soloRun());
    const all = slices.get(m)!;
    const { r, rate, cpu } = [...all].sort((a, b) => a.rate - b.rate)[all.length >> 1]!;
    addRow(ctx, names.rate, m, rate, 'tunnels/s');
    addRow(ctx, names.p50, m, r.p50Ms, 'ms');
    addRow(ctx, names.p99, m, r.p99Ms, 'ms');
    // The gateway's own CPU per tunnel is what a code change moves; the rate also moves with whatever else the two
    // shared cores are doing, so the per-slice CPU is the steadier side-by-side figure.
    const cpuPerTunnel = all.map((x) => (x.cpu.gateway === undefined ? undefined : (x.cpu.gateway * 1e6) / Math.max(1, x.r.count)));
    // The device shares the gateway's core: when the core is the bound, the rate follows the two together.
    const deviceCpuPerTunnel = all.map((x) => ((x.cpu.device ?? NaN) * 1e6) / Math.max(1, x.r.count));
    const known = cpuPerTunnel.filter((v): v is number => v !== undefined).sort((a, b) => a - b);
    const cpuUsPerTunnel = known.length > 0 ? known[known.length >> 1]! : undefined;
    if (names.cpu !== undefined && cpuUsPerTunnel !== undefined) addRow(ctx, names.cpu, m, cpuUsPerTunnel, 'µs/tunnel');
    outcomes.set(m, { rate, cpuUsPerTunnel, slices: all.map((x, i) => ({ rate: x.rate, cpuUsPerTunnel: cpuPerTunnel[i], deviceCpuUsPerTunnel: deviceCpuPerTunnel[i]! })) });
    const failures = all.reduce((n, x) => n + x.r.failures, 0);
    if (failures > 0) ctx.log(`  ! ${measuredName(m)}: ${failures} failed setups, e.g. ${all.flatMap((x) => x.r.errors).slice(0, 3).join('; ')}`);
    ctx.details.push({
      scenario: names.details,
      path: m.path,
      listener: m.listener,
      ...(m.variant !== undefined ? { variant: m.variant } : {}),
      tunnels: r.count,
      failures,
      errors: all.flatMap((x) => x.r.errors).slice(0, 5),
      maxMs: r.maxMs,
      cpuSeconds: cpu,
      gatewayCpuUsPerTunnel: cpu.gateway === undefined ? undefined : round((cpu.gateway * 1e6) / Math.max(1, r.count), 1),
      allSlicesPerSecond: all.map((x) => round(x.rate)),
      allSlicesCpuUsPerTunnel: cpuPerTunnel.map((v) => (v === undefined ? null : round(v, 1))),
      allSlicesDeviceCpuUsPerTunnel: deviceCpuPerTunnel.map((v) => round(v, 1)),
      concurrency1: {
        tunnels: solo.count,
        failures: solo.failures,
        p50Ms: solo.p50Ms,
        p99Ms: solo.p99Ms,
        // Without batching (one event per wake-up), so above the loaded figure.
        gatewayCpuUsPerTunnel: soloCpu.gateway === undefined ? undefined : round((soloCpu.gateway * 1e6) / Math.max(1, solo.count), 1),
      },
    });
  }
  return outcomes;
}
